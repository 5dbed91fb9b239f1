"""The ``shpers`` command: one sub-command group per module, errors as one line, exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from shpers_core.errors import UserError
from shpers_core.third_party import hide_third_party_deprecations

# Each module exposes ``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMAND_MODULES = [
    "shpers_core.cli.data_cmd",
    "shpers_core.cli.bench_cmd",
    "shpers_core.cli.run_cmd",
    "shpers_core.cli.runs_cmd",
    "shpers_core.cli.study_cmd",
    "shpers_core.cli.sweep_cmd",
    "shpers_core.cli.workspace_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shpers", description="Personalise small chat models as smart-home assistants.")
    parser.add_argument("--workspace", help="workspace folder (default: $SHPERS_WORKSPACE or the per-user data folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything imports tqdm (transformers does): it reads TQDM_DISABLE once, at import.
    os.environ.setdefault("TQDM_DISABLE", "1")
    hide_third_party_deprecations()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"shpers: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shpers: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`shpers runs list | head`): stop quietly, as other commands do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

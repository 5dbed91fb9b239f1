"""The ``shpers`` command: one sub-command group per module, errors as one line, exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from shpers_core.cli.commands import COMMANDS
from shpers_core.errors import UserError
from shpers_core.third_party import hide_third_party_deprecations


def _add_global_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default: $SHPERS_WORKSPACE or the per-user data folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")


def _command_in(argv: list[str]) -> str | None:
    """The command word of ``argv`` (after the global options), or None."""
    pre = argparse.ArgumentParser(add_help=False)
    _add_global_args(pre)
    pre.add_argument("command", nargs="?")
    try:
        known, _ = pre.parse_known_args(argv)
    except SystemExit:  # a malformed global option: the full parser says what is wrong
        return None
    return known.command


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole ``shpers`` parser. Given ``argv``, only the module of its command is imported; the
    other commands get a bare parser with their help line, enough for ``shpers --help``."""
    parser = argparse.ArgumentParser(prog="shpers", description="Personalise small chat models as smart-home assistants.")
    _add_global_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _command_in(argv) if argv is not None else None
    load_all = argv is None
    modules = {COMMANDS[wanted][0]} if wanted in COMMANDS else set()
    loaded: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if load_all or module in modules:
            if module not in loaded:
                importlib.import_module(module).add_parser(sub)
                loaded.add(module)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything imports tqdm (transformers does): it reads TQDM_DISABLE once, at import.
    os.environ.setdefault("TQDM_DISABLE", "1")
    hide_third_party_deprecations()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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

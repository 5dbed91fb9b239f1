"""``shpers data``: generate, validate and summarise dialogue datasets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shpers_core.cli.commands import command_help
from shpers_core.data import dataset_stats, generate_dataset, load_dataset, write_jsonl
from shpers_core.data.importers import FORMATS, import_dataset
from shpers_core.data.library import install_dataset
from shpers_core.data.validate import MAX_MESSAGE_CHARS, dataset_warnings, why_not_a_file
from shpers_core.errors import UserError
from shpers_core.workspace import Workspace

WARNINGS_SHOWN = 20


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help=command_help("data"),
                                   description="Generate, validate and summarise dialogue datasets.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    gen = sub.add_parser("generate", help="write the default synthetic dataset",
                         description="Generate personas and dialogues (user wording from Home Assistant "
                                     "intent templates) and write them as JSONL.")
    gen.add_argument("--personas", type=int, default=200, metavar="N", help="number of personas (default 200)")
    gen.add_argument("--dialogues", type=int, default=30, metavar="N",
                     help="dialogues per persona, at least 3 (default 30)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same bytes (default 0)")
    gen.add_argument("--out", type=Path, metavar="PATH",
                     help="output JSONL file (default: the workspace's dataset/dialogues.jsonl)")
    gen.add_argument("--force", action="store_true", help="replace an existing dataset file without asking")
    gen.set_defaults(func=_generate)

    val = sub.add_parser("validate", help="check a dataset file or folder",
                         description="Load a JSON array, a JSONL file or a folder of them and report the "
                                     "first problem (file, record, field), or a one-line summary.")
    val.add_argument("path", type=Path, help="dataset file or folder")
    val.add_argument("--max-message-chars", type=int, default=MAX_MESSAGE_CHARS, metavar="N",
                     help=f"warn about messages longer than this (default {MAX_MESSAGE_CHARS})")
    val.set_defaults(func=_validate)

    imp = sub.add_parser("import", help="convert a dataset and make it the workspace's dataset",
                         description="Validate and convert a dataset (a local file or folder, or a Hugging Face "
                                     "dataset id) and make it the workspace's dataset. The previous dataset is "
                                     "kept under dataset/archive/HASH.jsonl; runs remember theirs by hash.")
    imp.add_argument("source", help="file, folder or Hugging Face dataset id (org/name)")
    imp.add_argument("--format", choices=FORMATS, help="layout of SOURCE (default: guessed from its files)")
    imp.add_argument("--persona-field", metavar="F",
                     help="chat layout: the column naming each conversation's user or persona")
    imp.add_argument("--character-field", metavar="F",
                     help="chat layout: the column describing the persona (optional)")
    imp.add_argument("--strict", action="store_true",
                     help="refuse personas with fewer than 3 dialogues instead of skipping them")
    imp.set_defaults(func=_import)

    st = sub.add_parser("stats", help="print a summary table of a dataset",
                        description="Print counts, turns per dialogue, domain and archetype mix, the share "
                                    "of persona-dependent replies and split sizes.")
    st.add_argument("path", type=Path, nargs="?", help="dataset file or folder (default: the workspace's dataset)")
    st.set_defaults(func=_stats)


def _generate(args: argparse.Namespace) -> int:
    out = args.out or Workspace.open(args.workspace).dataset_path
    check_output(out, force=args.force)
    ds = generate_dataset(args.personas, args.dialogues, args.seed)
    write_jsonl(ds, out)
    print(f"wrote {len(ds.personas)} personas, {sum(len(p.dialogues) for p in ds.personas.values())} dialogues to {out}")
    return 0


def check_output(out: Path, *, force: bool) -> None:
    """Refuse to replace anything but a regular file; ask before replacing one unless ``force``."""
    if not os.path.lexists(out):
        return
    if os.path.islink(out) or not out.is_file():
        what = "is a symbolic link" if os.path.islink(out) else ("is a folder" if out.is_dir() else why_not_a_file(out))
        raise UserError(f"{out}: {what}; not replaced (give a file path with --out)")
    if force:
        return
    try:
        answer = input(f"{out} exists; replace this dataset? [y/N] ")
    except (EOFError, OSError):
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError(f"{out} exists and was not replaced; pass --force to replace it")


def _validate(args: argparse.Namespace) -> int:
    ds = load_dataset(args.path)
    warnings = dataset_warnings(ds, args.max_message_chars)
    for line in warnings[:WARNINGS_SHOWN]:
        print(f"shpers: warning: {line}", file=sys.stderr)
    if len(warnings) > WARNINGS_SHOWN:
        print(f"shpers: warning: ... and {len(warnings) - WARNINGS_SHOWN} more", file=sys.stderr)
    print(f"ok: {len(ds.personas)} personas, {len(ds.dialogues())} dialogues"
          + (f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""))
    return 0


def _import(args: argparse.Namespace) -> int:
    result = import_dataset(args.source, args.format, persona_field=args.persona_field,
                            character_field=args.character_field, strict=args.strict)
    ws = Workspace.open(args.workspace)
    done = install_dataset(ws, result.dataset)
    print(f"imported {result.summary()} as dataset {done.content_hash} into {done.path}")
    if done.previous is not None:
        print(f"previous dataset kept at {done.previous}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    path = args.path or Workspace.open(args.workspace).dataset_path
    print(format_stats(dataset_stats(load_dataset(path))))
    return 0


def format_stats(s: dict) -> str:
    """The stats dict as an aligned two-column table."""
    turns = s["user_turns"]
    share = s["persona_dependent_share"]
    rows = [
        ("source", s["source"]),
        ("content hash", s["content_hash"]),
        ("personas", s["personas"]),
        ("dialogues", s["dialogues"]),
        ("messages", s["messages"]),
        ("user turns / dialogue", f"mean {turns['mean']:.2f}, min {turns['min']}, max {turns['max']}"),
        ("persona-dependent replies", "not marked" if share is None else f"{100 * share:.1f}%"),
        ("splits (train/val/test)", "/".join(str(s["splits"][k]) for k in ("train", "val", "test"))),
    ]
    rows += [(f"domain: {k}", f"{v} ({100 * v / s['dialogues']:.1f}%)") for k, v in s["domains"].items()]
    rows += [(f"archetype: {k}", f"{v} personas") for k, v in s["archetypes"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

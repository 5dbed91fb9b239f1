"""``shpers workspace clean``: finish deletes cut short and report (or remove) orphan run folders."""

from __future__ import annotations

from shpers_core.cli.commands import command_help
from shpers_core.jobs.delete import clean_workspace as clean
from shpers_core.jobs.delete import human_size
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def add_parser(sub) -> None:
    p = sub.add_parser("workspace", help=command_help("workspace"))
    ws = p.add_subparsers(dest="workspace_command", metavar="ACTION")
    ws.required = True
    clean = ws.add_parser("clean", help="finish interrupted deletes; list run folders no run owns",
                          description="Finish deletes that were cut short (runs left 'deleting') and list the "
                                      "folders under runs/ that belong to no stored run; --remove deletes them.")
    clean.add_argument("--remove", action="store_true", help="also delete the orphan folders")
    clean.set_defaults(func=clean_workspace)


def clean_workspace(args) -> int:
    ws = Workspace.open(args.workspace)
    with RunStore(ws.db_path) as store:
        finished, orphans, size = clean(ws, store, remove_orphans=args.remove)
    for run_id in finished:
        print(f"finished deleting {run_id}")
    for path in orphans:
        print(f"{'removed' if args.remove else 'orphan'} {path}")
    if orphans and not args.remove:
        print(f"{len(orphans)} orphan folder(s), {human_size(size)}: `shpers workspace clean --remove` deletes them")
    elif not finished and not orphans:
        print("nothing to clean")
    return 0

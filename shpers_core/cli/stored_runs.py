"""What the commands that read stored runs share: opening the store, one-line text, strict JSON, output files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from shpers_core.atomic import atomic_write_text
from shpers_core.errors import UserError
from shpers_core.export.folder import describe_os_error
from shpers_core.jobs.delete import finish_pending_deletes
from shpers_core.store import RunStore, StoreError
from shpers_core.workspace import Workspace


def open_store(args) -> RunStore:
    """The workspace's run store, after finishing any delete a kill cut short."""
    ws = Workspace.open(args.workspace)
    store = RunStore(ws.db_path)
    try:
        # A delete cut short (a kill) is finished the next time the workspace is opened.
        finish_pending_deletes(ws, store)
    except StoreError:
        store.close()
        raise
    except UserError as exc:  # a file that cannot be removed: say so, and go on with the command
        print(f"shpers: warning: {exc}", file=sys.stderr)
    return store


def one_line(text: str) -> str:
    """A user's text for a one-line listing: a newline or other control character cannot fake a row."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def strict_json(value) -> str:
    """Strict JSON for scripts: a NaN or infinite score (a diverged run) becomes null, not ``NaN``."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=1, default=str, allow_nan=False)


def check_output_file(path: Path) -> None:
    """A one-line :class:`UserError` now for an output file that could not be written later (a folder, or a
    missing parent folder): before a long job, not after it."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    if not path.absolute().parent.is_dir():
        raise UserError(f"{path}: parent folder {path.absolute().parent} does not exist")


def write_text_file(path: Path, text: str) -> None:
    """Write ``path`` whole (temporary file, rename) or raise a one-line :class:`UserError`."""
    check_output_file(path)
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(describe_os_error(path, exc)) from None


def print_or_write(text: str, out: str | None, what: str) -> None:
    """``text`` to the file ``out`` (then "wrote WHAT to OUT"), or to standard output when ``out`` is None."""
    if out:
        write_text_file(Path(out), text)
        print(f"wrote {what} to {out}")
    else:
        print(text, end="")

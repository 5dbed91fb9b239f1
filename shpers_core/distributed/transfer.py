"""What travels between the driver's workspace and a worker's scratch one: run folders as bytes, and
the store rows a job reads (a trimmed snapshot) or wrote (merged back by the driver alone).

Only the driver writes the workspace's SQLite; a worker gets a small copy holding the runs it may
read and returns its copy whole, from which the driver takes the rows of the runs it ran.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from shpers_core.atomic import atomic_write_bytes, atomic_write_dir
from shpers_core.names import inside

Files = dict[str, bytes]
"""Relative path (posix) -> content."""

# Tables keyed by run_id, in the order rows may be inserted (runs first for the foreign keys).
RUN_TABLES = ("metrics", "persona_scores", "predictions", "artefacts", "curves", "events_log")
# Columns the driver keeps as it has them: its own process runs the job as far as the store knows
# (started_at too: the driver's start precedes the placement it logs, which the Jobs tab reads).
DRIVER_COLUMNS = frozenset({"id", "name", "created_at", "started_at", "host", "pid", "heartbeat_at", "notes",
                            "tags"})


def _hidden(rel: Path) -> bool:
    # ".name.tmp-..." and ".name.old-..." are atomic writes in progress.
    return any(part.startswith(".") for part in rel.parts)


def read_tree(root: Path, folder: Path) -> Files:
    """Every finished file under ``root/folder`` as bytes, keyed by its path relative to ``root``."""
    out: Files = {}
    base = root / folder
    if not base.is_dir():
        return out
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not _hidden(rel.relative_to(folder)):
            out[rel.as_posix()] = path.read_bytes()
    return out


def units(files: Files) -> dict[str, Files]:
    """Files grouped by the folder written as one piece: ``runs/ID/{adapters,checkpoints,...}/NAME``,
    or the file itself (``runs/ID/plan.json``)."""
    groups: dict[str, Files] = {}
    for rel, data in files.items():
        parts = rel.split("/")
        unit = "/".join(parts[:4]) if len(parts) > 4 else rel
        groups.setdefault(unit, {})[rel] = data
    return groups


def write_files(root: Path, files: Files) -> None:
    """Write ``files`` under ``root``: each adapter or checkpoint folder replaced as a whole (a reader
    sees the old folder or the new one), each other file renamed into place."""
    root = Path(root)
    for unit, members in units(files).items():
        final = root / unit
        for rel in members:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"refusing to write {rel!r} outside {root}")
            inside(root, root / rel)
        if list(members) == [unit]:
            atomic_write_bytes(final, members[unit])
            continue

        def write(tmp: Path, members=members, unit=unit) -> None:
            for rel, data in members.items():
                target = tmp / Path(rel).relative_to(unit)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

        atomic_write_dir(final, write)


def snapshot(db_path: Path, keep_runs: list[str]) -> bytes:
    """A copy of the store holding only ``keep_runs`` (their rows in every table), as bytes."""
    with tempfile.TemporaryDirectory(prefix="shpers-snap-") as tmp:
        copy = Path(tmp) / "shpers.sqlite"
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
            marks = ",".join("?" * len(keep_runs)) or "NULL"
            for table in RUN_TABLES:
                dst.execute(f"DELETE FROM {table} WHERE run_id NOT IN ({marks})", keep_runs)
            dst.execute(f"DELETE FROM runs WHERE id NOT IN ({marks})", keep_runs)
            dst.commit()
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.execute("VACUUM")
        finally:
            src.close()
            dst.close()
        return copy.read_bytes()


def run_ids(db_bytes: bytes) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="shpers-snap-") as tmp:
        path = Path(tmp) / "w.sqlite"
        path.write_bytes(db_bytes)
        con = sqlite3.connect(path)
        try:
            return [row[0] for row in con.execute("SELECT id FROM runs")]
        finally:
            con.close()


def merge_back(store, db_bytes: bytes, run_id: str, new_runs: list[str]) -> None:
    """Copy what a worker's store holds of ``run_id`` (its outcome, scores, predictions, artefacts)
    and of ``new_runs`` (runs the job created, e.g. a source run it trained first) into ``store``,
    in one transaction. The curves and log lines of ``run_id`` are not copied: the driver recorded
    them from the events as they came."""
    with tempfile.TemporaryDirectory(prefix="shpers-merge-") as tmp:
        path = Path(tmp) / "worker.sqlite"
        path.write_bytes(db_bytes)
        db = store.db
        db.execute("ATTACH DATABASE ? AS w", [str(path)])
        try:
            with store.transaction():
                cols = [r[1] for r in db.execute("PRAGMA w.table_info(runs)").fetchall()]
                for rid in new_runs:
                    names = ",".join(cols)
                    db.execute(f"INSERT OR REPLACE INTO main.runs ({names}) SELECT {names} FROM w.runs WHERE id = ?",
                               [rid])
                outcome = [c for c in cols if c not in DRIVER_COLUMNS]
                row = db.execute(f"SELECT {','.join(outcome)} FROM w.runs WHERE id = ?", [run_id]).fetchone()
                if row is not None:
                    sets = ",".join(f"{c} = ?" for c in outcome)
                    db.execute(f"UPDATE main.runs SET {sets} WHERE id = ?", [*row, run_id])
                for rid in [run_id, *new_runs]:
                    for table in RUN_TABLES:
                        if rid == run_id and table in ("curves", "events_log"):
                            continue
                        tcols = [r[1] for r in db.execute(f"PRAGMA w.table_info({table})").fetchall()
                                 if not (table in ("artefacts", "events_log") and r[1] == "id")]
                        names = ",".join(tcols)
                        db.execute(f"DELETE FROM main.{table} WHERE run_id = ?", [rid])
                        db.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM w.{table} "
                                   "WHERE run_id = ?", [rid])
        finally:
            db.execute("DETACH DATABASE w")


# --- a shared folder (--shared-folder), instead of the object store -----------------------------

def put_shared(shared: Path, files: Files) -> str:
    """Write ``files`` into a new batch folder of ``shared`` (renamed into place when complete, and never
    written again, so a reader on another node sees all of it or nothing); its name."""
    shared.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".batch-", dir=shared))
    for rel, data in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"refusing to write {rel!r} outside {shared}")
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    final = shared / tmp.name[1:]
    os.rename(tmp, final)
    return final.name


def read_shared(shared: Path, batch: str) -> Files:
    """The files of a batch :func:`put_shared` wrote, keyed as they were given."""
    base = Path(shared) / batch
    if batch.startswith(".") or "/" in batch or not base.is_dir():
        raise ValueError(f"no batch {batch!r} in the shared folder {shared}")
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def take_shared(shared: Path, batch: str) -> Files:
    """:func:`read_shared`, then the batch is removed (the driver has it now)."""
    files = read_shared(shared, batch)
    shutil.rmtree(Path(shared) / batch, ignore_errors=True)
    return files


def pack(files: Files, shared: Path | None) -> tuple:
    """The channel item that carries ``files`` to the driver: the bytes (through the object store), or
    the name of the batch written into the shared folder."""
    return ("files", files) if shared is None else ("shared", put_shared(shared, files))


def unpack(item: tuple, shared: Path | None) -> Files:
    kind, payload = item
    return payload if kind == "files" else take_shared(shared, payload)

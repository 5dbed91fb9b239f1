"""The run database's tables and the ordered migrations that build and upgrade them.

``PRAGMA user_version`` is the number of migrations applied. A migration is a function of the
open :class:`sqlite_utils.Database`; :func:`migrate` runs each pending one in its own
transaction, so a crash mid-upgrade leaves the file at the previous version. Append new
migrations, never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from shpers_core.names import relocated, to_stored
from shpers_core.store.errors import StoreError

# "shpr": marks the file as ours, so pointing the app at another program's database fails clearly.
APPLICATION_ID = 0x73687072

# "deleting": its files are being removed; its rows go last, so a delete cut short is finished later.
QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED, DELETING = (
    "queued", "running", "finished", "failed", "cancelled", "interrupted", "deleting")
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED, DELETING)
TERMINAL_STATUSES = (FINISHED, FAILED, CANCELLED, INTERRUPTED)
RESUMABLE_STATUSES = (INTERRUPTED, CANCELLED, FAILED)
"""A run in one of these can be resumed (``shpers runs resume``, the app's Resume)."""
CURVE_KINDS = ("train", "val")
# Test-turn subsets, then "validation" (scores on validation data, e.g. an adapter's validation
# loss) and "info" (facts about a run that are not scores: silhouette, a persona's cluster).
SUBSETS = ("all", "persona_dependent", "other", "validation", "info")


def _v1_initial(db: Database) -> None:
    db["runs"].create(
        {
            "id": str, "name": str, "method": str, "params": str, "base_model": str,
            "dataset_path": str, "dataset_hash": str, "personas": str, "seed": int, "status": str,
            "error": str, "created_at": str, "started_at": str, "finished_at": str,
            "duration_s": float, "trainable_params": int, "code_version": str, "host": str,
            "pid": int, "heartbeat_at": str, "parent_run_id": str, "notes": str,
        },
        pk="id",
        not_null={"method", "params", "personas", "status", "created_at"},
        defaults={"name": "", "params": "{}", "personas": "[]", "seed": 0, "notes": "",
                  "base_model": "", "dataset_path": "", "dataset_hash": ""},
    )
    db["runs"].create_index(["status"])
    db["runs"].create_index(["created_at"])
    run_fk = [("run_id", "runs", "id")]
    # Primary keys double as the per-run indexes (run_id comes first) and make re-logging a
    # step after a resume replace the point instead of duplicating it.
    db["curves"].create(
        {"run_id": str, "series": str, "kind": str, "step": int, "value": float},
        pk=("run_id", "series", "kind", "step"), foreign_keys=run_fk, not_null={"run_id", "series", "kind", "step"},
    )
    db["metrics"].create(
        {"run_id": str, "subset": str, "name": str, "value": float},
        pk=("run_id", "subset", "name"), foreign_keys=run_fk, not_null={"run_id", "subset", "name"},
    )
    db["persona_scores"].create(
        {"run_id": str, "metric": str, "subset": str, "persona_id": str, "value": float},
        pk=("run_id", "metric", "subset", "persona_id"), foreign_keys=run_fk,
        not_null={"run_id", "metric", "subset", "persona_id"},
    )
    db["predictions"].create(
        {"run_id": str, "persona_id": str, "dialogue_id": str, "turn": int, "history": str,
         "prediction": str, "reference": str, "persona_dependent": int, "scores": str},
        pk=("run_id", "persona_id", "dialogue_id", "turn"), foreign_keys=run_fk,
        not_null={"run_id", "persona_id", "dialogue_id", "turn"},
        defaults={"history": "[]", "scores": "{}"},
    )
    db["artefacts"].create(
        {"id": int, "run_id": str, "kind": str, "persona_id": str, "path": str, "created_at": str},
        pk="id", foreign_keys=run_fk, not_null={"run_id", "kind", "path", "created_at"},
    )
    db["artefacts"].create_index(["run_id", "kind", "path"], unique=True)
    db["events_log"].create(
        {"id": int, "run_id": str, "ts": str, "level": str, "message": str},
        pk="id", foreign_keys=run_fk, not_null={"run_id", "ts", "level", "message"},
    )
    db["events_log"].create_index(["run_id"])
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _add_run_tags(db: Database) -> None:
    """Runs gain tags (a JSON list of words) for filtering the results; notes already exist."""
    db["runs"].add_column("tags", str, not_null_default="[]")


def _v3_relative_paths(db: Database) -> None:
    """Artefact paths relative to the workspace (the database's folder), so a moved or copied
    workspace finds its own adapters. A path under ``runs/`` of another folder (the workspace was
    moved before this upgrade) becomes that ``runs/...`` part."""
    file = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not file:
        return
    root = Path(file).parent
    for row_id, path in db.execute("SELECT id, path FROM artefacts").fetchall():
        if not Path(path).is_absolute():
            continue
        stored = to_stored(root, path)
        if Path(stored).is_absolute():
            moved = relocated(root, Path(path))
            stored = to_stored(root, moved) if moved is not None else stored
        if stored != path:
            db.execute("UPDATE artefacts SET path = ? WHERE id = ?", [stored, row_id])


MIGRATIONS: list[Callable[[Database], None]] = [_v1_initial, _add_run_tags, _v3_relative_paths]


def latest_version() -> int:
    return len(MIGRATIONS)


def check_version(db: Database, path: Path, *, writable: bool) -> int:
    """The file's schema version; :class:`StoreError` if it is not ours or cannot be used as is."""
    # No transaction (it would hold a lock other openers wait on): the order of the reads makes them
    # safe. Another process's first migration commits tables and application id together, so tables
    # read before the id imply the id is already there; read the other way round, a commit between the
    # reads made a fresh file look like someone else's (seen in CI).
    version = db.execute("PRAGMA user_version").fetchone()[0]
    fresh = version == 0 and not db.table_names()
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    if not fresh and app_id != APPLICATION_ID:
        raise StoreError(f"{path} is not a shpers run database")
    if version > latest_version():
        raise StoreError(f"{path} was written by a newer shpers (schema v{version}; this one knows up to "
                         f"v{latest_version()}); upgrade shpers to open it")
    if version < latest_version() and not writable:
        raise StoreError(f"{path} has schema v{version} and needs upgrading to v{latest_version()}, "
                         "but it was opened read-only; open it once with write access")
    return version


def migrate(db: Database) -> int:
    """Apply the pending migrations, one transaction each; returns the new version.

    Foreign keys are off meanwhile, as SQLite's ALTER TABLE procedure asks (``table.transform``
    drops and recreates tables); ``foreign_key_check`` guards each step instead.
    """
    conn = db.conn
    conn.execute("PRAGMA foreign_keys = OFF")
    while True:
        # IMMEDIATE takes the write lock before reading the version, so two processes opening
        # a fresh file at once apply each migration exactly once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= latest_version():
                conn.execute("COMMIT")
                return version
            MIGRATIONS[version](db)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(f"migration to v{version + 1} broke foreign keys: {broken[:3]}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

"""The run store: every run, its curves, scores, predictions, artefacts and log in one SQLite file.

A :class:`RunStore` owns one connection and is not shared across threads: each thread or
process opens its own (the CLI and the app may write the same workspace at once; WAL lets
readers run beside a writer, and writers wait up to :data:`BUSY_TIMEOUT_S` for each other).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from shpers_core.names import from_stored
from shpers_core.store import schema
from shpers_core.store.errors import StoreError, translate
from shpers_core.store.host import code_version, host_name, now_iso, parse_iso, pid_alive
from shpers_core.store.reads import RunReads
from shpers_core.store.records import (
    RunRecord,
    to_json,
)
from shpers_core.store.results import ResultWrites, check_status

BUSY_TIMEOUT_S = 30.0

_RUN_COLUMNS = tuple(f for f in RunRecord.__dataclass_fields__)
_EDITABLE = frozenset(_RUN_COLUMNS) - {"id", "created_at"}


def new_run_id(when: datetime | None = None) -> str:
    """``r20261125-061530-ab12``: creation time first, so ids sort by age."""
    when = when or datetime.now(timezone.utc)
    return f"r{when:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class RunStore(ResultWrites, RunReads):
    """The run database of one workspace.

    Opening creates or upgrades the file (see :mod:`shpers_core.store.schema`) and, unless
    ``recover`` is false, marks runs whose process is gone as ``interrupted`` (see
    :meth:`recover_interrupted`). ``read_only`` opens the file with SQLite's ``mode=ro``: reads
    work, every write raises :class:`StoreError`. Every write is one transaction; group several
    with :meth:`transaction`. Methods that take a run id also take an unambiguous prefix of one.
    ``check_same_thread=False`` is for callers that serialise access themselves (:class:`StoreSink`).
    """

    def __init__(self, db_path: str | Path, *, read_only: bool = False, recover: bool = True,
                 stale_after_s: float = 60.0, check_same_thread: bool = True):
        self.path = Path(db_path)
        self.read_only = read_only
        self._depth = 0
        self._db: Database | None = None
        try:
            self._db = self._open(check_same_thread)
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.ProgrammingError):
                raise translate(exc, self.path) from exc
            raise
        if recover and not read_only:
            try:
                self.recover_interrupted(stale_after_s)
            except BaseException:
                self.close()
                raise

    def _open(self, check_same_thread: bool) -> Database:
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open {self.path}: folder {self.path.parent} does not exist")
        if self.read_only:
            if not self.path.is_file():
                raise StoreError(f"cannot open {self.path}: no such file")
            target, uri = f"{self.path.resolve().as_uri()}?mode=ro", True
        else:
            target, uri = str(self.path), False
        # sqlite3's timeout is SQLite's busy_timeout: a writer waits for the lock instead of failing.
        conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, check_same_thread=check_same_thread)
        db = Database(conn, execute_plugins=False)
        try:
            version = schema.check_version(db, self.path, writable=not self.read_only)
            if not self.read_only:
                _enable_wal(db)
                if version < schema.latest_version():
                    schema.migrate(db)
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return db

    # -- connection -------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """The sqlite-utils database, for ad-hoc reads; write through the methods."""
        if self._db is None:
            raise StoreError(f"the run store {self.path} is closed")
        return self._db

    @property
    def root(self) -> Path:
        """The workspace folder: artefact paths are stored relative to it."""
        return self.path.parent

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the block; nested blocks join the outer one.

        ``BEGIN IMMEDIATE`` takes the write lock up front: a deferred transaction that reads
        first and writes later could fail with SQLITE_BUSY without waiting for the timeout.
        """
        conn = self.db.conn
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._errors():
            cursor = self.db.execute(sql, list(params))
            keys = [d[0] for d in cursor.description]
            return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def resolve_id(self, run_id: str) -> str:
        """The full id of the one run whose id is or starts with ``run_id``."""
        if self._select("SELECT 1 AS found FROM runs WHERE id = ?", [run_id]):
            return run_id
        matches = [r["id"] for r in self._select(
            "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 6", [len(run_id), run_id])] if run_id else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise StoreError(f"no run '{run_id}' in {self.path}")
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise StoreError(f"run id '{run_id}' is ambiguous in {self.path}: it starts {shown}")

    # -- run lifecycle ----------------------------------------------------------------------

    def create_run(self, method: str, params: Mapping[str, Any] | Any, base_model: str, dataset_hash: str,
                   personas: Iterable[str], *, seed: int = 0, dataset_path: str | Path = "", name: str = "",
                   parent_run_id: str | None = None, status: str = "queued", notes: str = "") -> str:
        """Record a new run; returns its id. ``params`` is a dict (or has ``to_dict()``) of every setting."""
        check_status(status)
        when = datetime.now(timezone.utc)
        params = params.to_dict() if hasattr(params, "to_dict") else dict(params)
        record = {
            "name": name, "method": method, "params": to_json(params), "base_model": base_model,
            "dataset_path": str(dataset_path), "dataset_hash": dataset_hash,
            "personas": to_json(list(personas)), "seed": int(seed), "status": status,
            "created_at": when.isoformat(timespec="milliseconds"), "code_version": code_version(),
            "notes": notes,
        }
        with self.transaction():
            if parent_run_id:
                record["parent_run_id"] = self.resolve_id(parent_run_id)
            # Names are unique per workspace, so a table or a chooser never shows two alike.
            record["name"] = self.unique_name(name) if name else name
            run_id = new_run_id(when)
            while self._select("SELECT 1 AS taken FROM runs WHERE id = ?", [run_id]):
                run_id = new_run_id(when)
            self.db["runs"].insert({"id": run_id, **record})
        return run_id

    def start_run(self, run_id: str) -> None:
        """Mark the run running in this process (pid, host, first heartbeat)."""
        now = now_iso()
        self._update(run_id, status="running", started_at=now, heartbeat_at=now, pid=os.getpid(),
                     host=host_name(), error=None, finished_at=None)

    def heartbeat(self, run_id: str) -> None:
        """Say the run's process is alive; revives a run wrongly marked interrupted while it was silent."""
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db.execute("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL "
                            "WHERE id = ? AND status = 'interrupted'", [rid])
            self.db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", [now_iso(), rid])

    def finish_run(self, run_id: str, metrics: Mapping[str, float] | None = None, duration_s: float | None = None,
                   trainable_params: int | None = None) -> None:
        """Mark the run finished; ``metrics`` go to subset "all". ``duration_s`` defaults to wall time since start."""
        with self.transaction():
            rid = self._end(run_id, "finished", error=None, duration_s=duration_s)
            if trainable_params is not None:
                self.db["runs"].update(rid, {"trainable_params": int(trainable_params)})
            if metrics:
                self.set_metrics(rid, metrics)

    def fail_run(self, run_id: str, error: str) -> None:
        self._end(run_id, "failed", error=str(error))

    def cancel_run(self, run_id: str) -> None:
        self._end(run_id, "cancelled", error=None)

    def set_status(self, run_id: str, status: str) -> None:
        """Set the status alone; a final status also stamps ``finished_at`` if it is empty."""
        check_status(status)
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["runs"].update(rid, {"status": status})
            if status in schema.TERMINAL_STATUSES:
                self.db.execute("UPDATE runs SET finished_at = ? WHERE id = ? AND finished_at IS NULL", [now_iso(), rid])

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change any run column but ``id`` and ``created_at`` (e.g. ``name``, ``notes``)."""
        unknown = sorted(set(fields) - _EDITABLE)
        if unknown:
            raise ValueError(f"cannot update run column(s) {', '.join(unknown)}; editable: {', '.join(sorted(_EDITABLE))}")
        if "status" in fields:
            check_status(fields["status"])
        self._update(run_id, **fields)

    def unique_name(self, name: str, exclude_run: str | None = None) -> str:
        """``name`` if no other run has it, else the first free ``name (2)``, ``name (3)``, ..."""
        taken = {r["name"] for r in self._select("SELECT name FROM runs WHERE (name = ? OR name LIKE ?) AND id != ?",
                                                 [name, f"{name} (%)", exclude_run or ""])}
        if name not in taken:
            return name
        n = 2
        while f"{name} ({n})" in taken:
            n += 1
        return f"{name} ({n})"

    def rename_run(self, run_id: str, name: str) -> str:
        """Give the run a new name; :class:`StoreError` if it is empty or another run has it."""
        name = name.strip()
        with self.transaction():
            rid = self.resolve_id(run_id)
            if not name:
                raise StoreError("a run name cannot be empty")
            if not name.isprintable():
                raise StoreError(f"run name {name!r} contains a newline or another control character")
            if self.unique_name(name, exclude_run=rid) != name:
                raise StoreError(f"another run is already named {name!r}; try {self.unique_name(name, rid)!r}")
            self.db["runs"].update(rid, {"name": name})
        return rid

    def _update(self, run_id: str, **fields: Any) -> str:
        if "tags" in fields:
            fields["tags"] = sorted({str(t).strip() for t in fields["tags"] if str(t).strip()})
        for key in ("params", "personas", "tags"):
            if key in fields:
                fields[key] = to_json(fields[key])
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["runs"].update(rid, fields)
        return rid

    def _end(self, run_id: str, status: str, *, error: str | None, duration_s: float | None = None) -> str:
        with self.transaction():
            rid = self.resolve_id(run_id)
            row = self._select("SELECT started_at, duration_s FROM runs WHERE id = ?", [rid])[0]
            now = now_iso()
            fields: dict[str, Any] = {"status": status, "finished_at": now, "error": error}
            if duration_s is None and row["duration_s"] is None and row["started_at"]:
                duration_s = (parse_iso(now) - parse_iso(row["started_at"])).total_seconds()
            if duration_s is not None:
                fields["duration_s"] = float(duration_s)
            self.db["runs"].update(rid, fields)
        return rid

    def recover_interrupted(self, stale_after_s: float = 60.0) -> list[str]:
        """Mark ``running`` runs whose process is gone as ``interrupted``; returns their ids.

        Gone means: on this host with a pid that no longer runs, or silent (no heartbeat) for
        more than ``stale_after_s``. ``finished_at`` becomes the last sign of life. A live run
        caught silent revives on its next :meth:`heartbeat`.
        Called on every writable open, so a crashed run shows as interrupted the next time
        anyone opens the workspace.
        """
        if not self._gone_runs(stale_after_s):
            # Most opens find nothing: checking first keeps them off the write lock, and lets a
            # read-only file still open for browsing.
            return []
        found = []
        with self.transaction():
            for run_id, why, last in self._gone_runs(stale_after_s):
                self.db["runs"].update(run_id, {"status": "interrupted", "error": f"interrupted: {why}",
                                                "finished_at": last})
                found.append(run_id)
        return found

    def _gone_runs(self, stale_after_s: float) -> list[tuple[str, str, str]]:
        here, now = host_name(), datetime.now(timezone.utc)
        gone = []
        for run in self._select("SELECT id, host, pid, heartbeat_at, started_at, created_at FROM runs "
                                "WHERE status = 'running'"):
            last = run["heartbeat_at"] or run["started_at"] or run["created_at"]
            silent_s = (now - parse_iso(last)).total_seconds()
            if run["host"] == here and pid_alive(run["pid"]) is False:
                gone.append((run["id"], f"its process {run['pid']} on {here} ended without finishing it", last))
            elif silent_s > stale_after_s:
                gone.append((run["id"], f"no sign of life from {run['host'] or 'its process'} for {silent_s:.0f} s", last))
        return gone

    def delete_run(self, run_id: str) -> list[Path]:
        """Delete the run and all its rows in one transaction; returns its artefact paths to remove."""
        with self.transaction():
            rid = self.resolve_id(run_id)
            status = self._select("SELECT status FROM runs WHERE id = ?", [rid])[0]["status"]
            if status == "running":
                raise StoreError(f"run '{rid}' in {self.path} is running; cancel it before deleting it")
            paths = [from_stored(self.root, r["path"])
                     for r in self._select("SELECT path FROM artefacts WHERE run_id = ? ORDER BY id", [rid])]
            for table in ("curves", "metrics", "persona_scores", "predictions", "artefacts", "events_log"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
            self.db.execute("DELETE FROM runs WHERE id = ?", [rid])
        return paths


def _enable_wal(db: Database) -> None:
    """Put the file in WAL mode, waiting for other openers as a write would.

    Changing the journal mode needs the file to itself, and SQLite answers "database is locked" at
    once, without its busy handler, while another process opening the same fresh file holds a read
    lock for a moment (seen with three processes opening one new workspace at once).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.journal_mode != "wal":
                db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


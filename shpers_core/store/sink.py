"""An event sink that records a job's curves and log lines in the run store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shpers_core.events import Cancelled, Event, Failed, Finished, Log, Step, Validation
from shpers_core.store.host import now_iso
from shpers_core.store.runstore import RunStore


class StoreSink:
    """Writes ``Step`` (kind "train") and ``Validation`` (kind "val") events as curve points and
    ``Log`` events as log lines of run ``run_id``.

    Rows are buffered and written in one transaction at most every ``flush_every_s`` (checked
    when an event arrives), on ``Finished``/``Failed``/``Cancelled``, and on :meth:`close`;
    each flush is also the run's heartbeat. The sink may be called from any thread: it opens
    its own connection on first flush and a lock serialises use of it. After :meth:`close` a
    later event reopens the connection, so nothing sent late is lost.
    """

    def __init__(self, db_path: str | Path, run_id: str, flush_every_s: float = 0.5, max_buffer: int = 5000):
        self.db_path = Path(db_path)
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self.max_buffer = max_buffer
        self._points: list[tuple[str, str, int, float]] = []
        self._lines: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._store: RunStore | None = None
        self._last_flush = time.monotonic()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Step):
                self._points.append((event.series, "train", event.step, float(event.loss)))
            elif isinstance(event, Validation):
                self._points.append((event.series, "val", event.step, float(event.loss)))
            elif isinstance(event, Log):
                self._lines.append((now_iso(), event.level, event.message))
            final = isinstance(event, (Finished, Failed, Cancelled))
            due = time.monotonic() - self._last_flush >= self.flush_every_s
            if final or due or len(self._points) + len(self._lines) >= self.max_buffer:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._store is None:
            # Recovery is the opener's business, not a job's; the lock makes sharing safe.
            self._store = RunStore(self.db_path, recover=False, check_same_thread=False)
        store = self._store
        with store.transaction():
            store.add_curve_points(self.run_id, self._points)
            store.add_log_lines(self.run_id, self._lines)
            store.heartbeat(self.run_id)
        # Cleared only once written: a failed flush keeps the rows for the next try.
        self._points, self._lines = [], []

    def close(self) -> None:
        """Write what is buffered and release the connection."""
        with self._lock:
            try:
                if self._points or self._lines:
                    self._flush()
            finally:
                if self._store is not None:
                    self._store.close()
                    self._store = None

    def __enter__(self) -> StoreSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

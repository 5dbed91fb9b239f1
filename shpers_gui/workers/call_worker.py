"""A short engine call (embeddings, loading, a streamed chat reply) on the thread pool."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from shpers_gui.workers.gc_guard import collect_on_gui_thread


class _Signals(QObject):
    result = Signal(object)
    chunk = Signal(object)
    error = Signal(str, str)
    done = Signal()


class CallWorker(QRunnable):
    """Runs ``fn(*args, **kwargs)`` off the GUI thread.

    When ``fn`` returns an iterator and ``stream`` is true, each item is emitted as ``chunk``
    and ``abort()`` stops between items (a streamed reply). ``result`` carries the return
    value (or the list of chunks), ``error`` the message and traceback; ``done`` comes last
    either way.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, stream: bool = False, **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # the Python object owns the signals; Qt must not free it
        self.signals = _Signals()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._stream = stream
        self._aborted = False

    def abort(self) -> None:
        self._aborted = True

    def run(self) -> None:
        try:
            out = self._fn(*self._args, **self._kwargs)
            if self._stream and isinstance(out, Iterator):
                chunks = []
                for item in out:
                    if self._aborted:
                        break
                    chunks.append(item)
                    self.signals.chunk.emit(item)
                # Close now, not at garbage collection: the generator's cleanup (e.g. removing
                # adapters from a shared model) must be done before the next call uses it.
                close = getattr(out, "close", None)
                if close is not None:
                    close()
                out = chunks
            self.signals.result.emit(out)
        except Exception as exc:  # noqa: BLE001 - shown to the user by whoever started the call
            self.signals.error.emit(str(exc) or type(exc).__name__, traceback.format_exc())
        finally:
            self.signals.done.emit()


_RUNNING: set[CallWorker] = set()


def run_call(fn: Callable[..., Any], *args: Any, on_result=None, on_error=None, on_chunk=None,
             stream: bool = False, **kwargs: Any) -> CallWorker:
    """Start ``fn`` on the global pool with the given callbacks; keeps the worker alive until done."""
    worker = CallWorker(fn, *args, stream=stream, **kwargs)
    if on_result is not None:
        worker.signals.result.connect(on_result)
    if on_error is not None:
        worker.signals.error.connect(on_error)
    if on_chunk is not None:
        worker.signals.chunk.connect(on_chunk)
    collect_on_gui_thread()
    _RUNNING.add(worker)
    worker.signals.done.connect(lambda: _RUNNING.discard(worker))
    QThreadPool.globalInstance().start(worker)
    return worker


def abort_all_and_wait(timeout_ms: int = 5000) -> bool:
    """Ask every running call to stop and wait for the pool; False if some did not end in time."""
    for worker in list(_RUNNING):
        worker.abort()
    return QThreadPool.globalInstance().waitForDone(timeout_ms)

"""Python's cycle collector runs on the GUI thread only, once the app starts threads.

A collection runs in whichever thread happens to allocate when a generation fills up. If that is a
worker thread and the garbage holds Qt objects (a closed window's widgets in a reference cycle),
their C++ destructors run off the GUI thread and Qt can crash: a full test run died of a segfault
while ``load_dataset`` on a pool thread was "Garbage-collecting" an earlier window. pyqtgraph's
``GarbageCollector`` turns automatic collection off and collects on a GUI-thread timer instead.
"""

from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

_collector: GarbageCollector | None = None


def collect_on_gui_thread() -> None:
    """From now on collect cycles on a timer in this (the GUI) thread only; idempotent."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=1.0)
    gc.disable()  # again, where someone turned it back on (the test suite does between tests)

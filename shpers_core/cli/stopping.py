"""Ctrl+C and ``shpers runs cancel`` (SIGTERM) stop a long command at its next step, with a checkpoint.

A bare KeyboardInterrupt would leave the run "running" until a later open marks it interrupted, and
lose every step since the last periodic checkpoint. The first Ctrl+C asks the job to stop as Cancel
does; a second one stops at once, for a user who cannot wait for the next step.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from shpers_core.events import Reporter

FIRST_CTRL_C = "stopping at the next step with a checkpoint (Ctrl+C again stops at once)"


@contextmanager
def stop_on_signals(reporter: Reporter, stream=None) -> Iterator[None]:
    """While inside, SIGTERM and the first SIGINT call ``reporter.request_stop()``; a second SIGINT
    raises KeyboardInterrupt. The previous handlers come back on exit."""
    pressed = []

    def on_interrupt(*_) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        reporter.request_stop()
        print(f"\n{FIRST_CTRL_C}", file=stream or sys.stderr, flush=True)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: reporter.request_stop()),
                signal.SIGINT: signal.signal(signal.SIGINT, on_interrupt)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

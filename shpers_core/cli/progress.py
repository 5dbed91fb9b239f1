"""Turns engine events into a one-line progress display on stderr."""

from __future__ import annotations

import sys
import time

from shpers_core.events import Event


class ProgressPrinter:
    """Redraws one status line at most ten times a second; log lines scroll above it."""

    def __init__(self, stream=None, quiet: bool = False, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.clock = clock
        self._phases: dict[str, tuple[float, int]] = {}  # phase -> (time, count) when first seen
        self._last = 0.0
        self._line = ""
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._quarters: dict[str, int] = {}

    def _milestone(self, key: str, done: int, total: int, text: str) -> None:
        """Without a terminal (logs, CI) there is no status line: print each quarter instead."""
        quarter = 4 * done // max(1, total)
        if quarter > self._quarters.get(key, 0):
            self._quarters[key] = quarter
            self._print(f"  {text}")

    def _pace(self, key: str, done: int, total: int, unit: str) -> str:
        """`` · 2.4 steps/s · ETA 1m05s`` from the phase's rate so far (empty until there is one)."""
        now = self.clock()
        t0, d0 = self._phases.setdefault(key, (now, done))
        if done <= d0 or now <= t0:
            return ""
        rate = (done - d0) / (now - t0)
        speed = f"{rate:.1f} {unit}s/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit}"
        return f" · {speed} · ETA {_duration(max(0, total - done) / rate)}"

    def _status(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self._tty:
            return
        if force or now - self._last > 0.1:
            self._last = now
            self.stream.write("\r\033[K" + text[:150])
            self.stream.flush()
            self._line = text

    def _print(self, text: str) -> None:
        if self._tty and self._line:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self._tty and self._line:
            self.stream.write(self._line[:150])

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        kind = event.kind
        if kind == "step":
            width = 24
            done = int(width * event.step / max(1, event.total_steps))
            text = (f"{event.series} step {event.step}/{event.total_steps} loss {event.loss:.4f} "
                    f"lr {event.learning_rate:.2e}" + self._pace(f"step/{event.series}", event.step,
                                                                   event.total_steps, "step"))
            self._status(f"[{'#' * done}{'.' * (width - done)}] {text}")
            if not self._tty:
                self._milestone(f"step/{event.series}", event.step, event.total_steps, text)
        elif kind == "validation":
            self._print(f"  {event.series} step {event.step}: validation loss {event.loss:.4f}")
        elif kind == "progress":
            text = f"{event.phase}: {event.done}/{event.total}" + self._pace(
                f"progress/{event.phase}", event.done, event.total, "item")
            self._status(text, force=event.done == event.total)
            if not self._tty:
                self._milestone(f"progress/{event.phase}", event.done, event.total, text)
        elif kind == "log":
            self._print(f"  {event.message}")
        elif kind == "started":
            self._quarters.clear()
            self._phases.clear()
            self._print(f"run {event.run_id}: {event.method}")
        elif kind == "finished":
            sim = event.metrics.get("embedding_similarity")
            self._line = ""
            self._print(f"run {event.run_id} finished" + (f": embedding similarity {sim * 100:.2f}%" if sim is not None else ""))
        elif kind == "failed":
            self._line = ""
            self._print(f"run {event.run_id} failed: {event.error}")
        elif kind == "cancelled":
            self._line = ""
            self._print(f"run {event.run_id} cancelled (resume with `shpers runs resume {event.run_id}`)")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

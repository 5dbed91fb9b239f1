"""Plain progress events: the engine's only way of telling anyone what it is doing.

A job never prints. It calls its :class:`Reporter`; the CLI turns the events into progress
bars, the app into Qt signals and plots, the run store into rows. Events are small frozen
dataclasses that pickle, so they cross a process boundary unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str = field(init=False, default="event")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Started(Event):
    run_id: str
    method: str
    total_steps: int
    kind: str = field(init=False, default="started")


@dataclass(frozen=True)
class Step(Event):
    """One optimiser step. ``series`` names the curve (e.g. a persona id in a multi-adapter run)."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    series: str = "train"
    tokens_per_s: float = 0.0
    """Training speed so far (real tokens per second over all adapters); 0 when not known."""
    kind: str = field(init=False, default="step")


@dataclass(frozen=True)
class Validation(Event):
    step: int
    loss: float
    series: str = "val"
    kind: str = field(init=False, default="validation")


@dataclass(frozen=True)
class Progress(Event):
    """Progress of a phase that is not training (evaluation, merging, clustering)."""

    phase: str
    done: int
    total: int
    kind: str = field(init=False, default="progress")


@dataclass(frozen=True)
class Log(Event):
    message: str
    level: str = "info"
    kind: str = field(init=False, default="log")


@dataclass(frozen=True)
class Finished(Event):
    run_id: str
    metrics: dict[str, float]
    kind: str = field(init=False, default="finished")


@dataclass(frozen=True)
class Failed(Event):
    run_id: str
    error: str
    traceback: str = ""
    kind: str = field(init=False, default="failed")


@dataclass(frozen=True)
class Cancelled(Event):
    run_id: str
    kind: str = field(init=False, default="cancelled")


class JobCancelled(Exception):
    """Raised inside a job when its reporter says stop; the runner turns it into :class:`Cancelled`."""


class Reporter:
    """Receives a job's events and tells it whether to stop.

    ``sink`` gets every event; ``should_stop`` is polled once per training step and between
    evaluation batches.
    """

    def __init__(self, sink: Callable[[Event], None] | None = None, should_stop: Callable[[], bool] | None = None):
        self._sinks: list[Callable[[Event], None]] = [sink] if sink else []
        self._should_stop = should_stop or (lambda: False)
        self._stop = threading.Event()

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            sink(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit(Log(message, level))

    def progress(self, phase: str, done: int, total: int) -> None:
        self.emit(Progress(phase, done, total))

    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set() or self._should_stop()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if a stop was asked for."""
        if self.should_stop():
            raise JobCancelled()


class CollectingReporter(Reporter):
    """Keeps every event in a list; handy in tests and notebooks."""

    def __init__(self, should_stop: Callable[[], bool] | None = None):
        super().__init__(None, should_stop)
        self.events: list[Event] = []
        self.add_sink(self.events.append)

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

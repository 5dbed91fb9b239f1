"""Run a job in a child process and relay its events, so a crash or an out-of-memory in a job
cannot take its caller (the app) down, and cancel is immediate."""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import traceback
from dataclasses import dataclass, field

from shpers_core.errors import UserError
from shpers_core.events import Cancelled, Event, Failed, JobCancelled, Reporter
from shpers_core.jobs.spec import JobSpec
from shpers_core.third_party import hide_third_party_deprecations
from shpers_core.workspace import Workspace

_CTX = mp.get_context("spawn")


@dataclass(frozen=True)
class ProcessEnded(Event):
    """The child process is gone; ``exitcode`` < 0 means it was killed by a signal."""

    exitcode: int
    kind: str = field(init=False, default="process_ended")


def _child(spec_dict: dict, workspace_root: str, events, stop, run_id: str | None, runner=None) -> None:
    # lazy: only the child runs jobs, so the app's process never loads the training and evaluation
    # stack (torch, transformers, peft) by importing this module.
    from shpers_core.jobs.runner import explain_failure, run_job

    ended: list[Event] = []

    def relay(event: Event) -> None:
        if isinstance(event, (Failed, Cancelled)):
            ended.append(event)
        events.put(event)

    hide_third_party_deprecations()
    reporter = Reporter(relay, stop.is_set)
    # `shpers runs cancel` sends SIGTERM: a cancel with a checkpoint, not a kill.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        (runner or run_job)(JobSpec.from_dict(spec_dict), Workspace.open(workspace_root), reporter, run_id=run_id)
    except BaseException as exc:  # noqa: BLE001 - relayed to the parent, which decides
        # The runner reports what fails once a run is recorded; a mistake found before that (a
        # persona not in the dataset, a read-only workspace) has only this event to show it.
        if not ended:
            if isinstance(exc, JobCancelled):
                events.put(Cancelled(run_id or ""))
            else:
                message = str(exc) if isinstance(exc, UserError) else explain_failure(exc)
                events.put(Failed(run_id or "", message, "" if isinstance(exc, UserError) else traceback.format_exc()))


class JobProcess:
    """One job in its own process. ``poll()`` returns the events that arrived since the last call.

    ``runner`` (a picklable callable with :func:`run_job`'s signature) runs it elsewhere, e.g. on Ray;
    the child process is then the driver."""

    def __init__(self, spec: JobSpec, workspace_root: str, run_id: str | None = None, runner=None):
        self.spec = spec
        self._events = _CTX.Queue()
        self._stop = _CTX.Event()
        self._process = _CTX.Process(target=_child, args=(spec.to_dict(), str(workspace_root), self._events,
                                                          self._stop, run_id, runner), daemon=True)
        self._ended = False

    def start(self) -> None:
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def cancel(self) -> None:
        """Ask the job to stop at its next step; it saves a checkpoint and reports Cancelled."""
        self._stop.set()

    def kill(self) -> None:
        self._process.kill()

    def poll(self, timeout: float = 0.0) -> list[Event]:
        out: list[Event] = []
        try:
            out.append(self._events.get(timeout=timeout) if timeout else self._events.get_nowait())
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            pass
        if not self._ended and not self._process.is_alive():
            # Drain what the child sent before it ended, then say it ended.
            try:
                while True:
                    out.append(self._events.get(timeout=0.2))
            except queue.Empty:
                pass
            self._ended = True
            out.append(ProcessEnded(self._process.exitcode if self._process.exitcode is not None else -1))
        return out

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

"""One Qt worker for any training job: a :class:`JobProcess` relayed as Qt signals.

The job runs in a child process, so a crash or an out-of-memory there cannot take the app
down. A QThread blocks on the process's event queue (``poll`` may wait a few hundred ms when
the child ends, which must not happen on the GUI thread) and re-emits each event as a signal;
the GUI thread only ever receives queued signals.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from shpers_core.events import Cancelled, Failed, Finished, Log, Progress, Started, Step, Validation
from shpers_core.jobs.spec import JobSpec
from shpers_core.workspace import Workspace
from shpers_gui.workers.gc_guard import collect_on_gui_thread


class JobWorker(QThread):
    """Runs ``spec`` (or resumes ``run_id``) in a child process and emits what it reports.

    Exactly one of ``finished_run``, ``failed``, ``cancelled`` or ``interrupted`` is emitted
    at the end, then ``ended``.
    """

    started_run = Signal(str)  # run id
    step = Signal(str, int, int, float, float)  # series, step, total steps, loss, learning rate
    speed = Signal(float)  # training tokens per second so far
    validation = Signal(str, int, float)  # series, step, loss
    progress = Signal(str, int, int)  # phase, done, total
    log = Signal(str, str)  # level, message
    finished_run = Signal(str, dict)  # run id, metrics
    failed = Signal(str, str, str)  # run id, error, traceback
    cancelled = Signal(str)
    interrupted = Signal(str, int)  # run id, exit code
    ended = Signal()

    def __init__(self, spec: JobSpec, workspace_root: str, run_id: str | None = None, parent=None, runner=None):
        super().__init__(parent)
        collect_on_gui_thread()
        self.runner = runner  # None: on this machine; else where the child process sends the job (Ray)
        self.spec = spec
        self.workspace_root = str(workspace_root)
        self.run_id = run_id or ""
        self._process = None  # a JobProcess once run() has started it
        self._cancel_requested = False
        self._last_progress: dict[str, float] = {}

    def cancel(self) -> None:
        """Ask the job to stop at its next step (it checkpoints and reports Cancelled)."""
        self._cancel_requested = True
        if self._process is not None:
            self._process.cancel()

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - the job must still end, with the reason shown
            self.failed.emit(self.run_id, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        self.ended.emit()

    def _run(self) -> None:
        from shpers_core.jobs.process import JobProcess, ProcessEnded

        process = JobProcess(self.spec, self.workspace_root, run_id=self.run_id or None, runner=self.runner)
        self._process = process
        process.start()
        _lower_priority(process.pid)
        if self._cancel_requested:
            process.cancel()
        ended = False
        terminal = False
        while not ended:
            for event in process.poll(timeout=0.1):
                if isinstance(event, ProcessEnded):
                    ended = True
                    if not terminal:
                        self._child_died(event.exitcode)
                else:
                    terminal = self._relay(event) or terminal
        process.join(5)

    def _relay(self, event) -> bool:
        """Emit ``event`` as a signal; True when it ends the job."""
        if isinstance(event, Started):
            self.run_id = event.run_id
            self.started_run.emit(event.run_id)
        elif isinstance(event, Step):
            self.step.emit(event.series, event.step, event.total_steps, event.loss, event.learning_rate)
            if event.tokens_per_s > 0:
                self.speed.emit(event.tokens_per_s)
        elif isinstance(event, Validation):
            self.validation.emit(event.series, event.step, event.loss)
        elif isinstance(event, Progress):
            # Orange3's habit: only re-emit when progress has moved by 0.1 % or more.
            frac = event.done / event.total if event.total else 1.0
            if event.done >= event.total or frac - self._last_progress.get(event.phase, -1.0) >= 0.001:
                self._last_progress[event.phase] = frac
                self.progress.emit(event.phase, event.done, event.total)
        elif isinstance(event, Log):
            self.log.emit(event.level, event.message)
        elif isinstance(event, Finished):
            self.finished_run.emit(event.run_id, dict(event.metrics))
            return True
        elif isinstance(event, Failed):
            self.failed.emit(event.run_id or self.run_id, event.error, event.traceback)
            return True
        elif isinstance(event, Cancelled):
            self.cancelled.emit(event.run_id)
            return True
        return False

    def _child_died(self, exitcode: int) -> None:
        if not self.run_id:
            # The child ended before it created a run: nothing in the store to mark.
            self.failed.emit("", f"the job process ended (exit code {exitcode}) before starting the run", "")
            return
        from shpers_core.store import RunStore

        # The run row still says "running"; the store notices the child's pid is gone.
        deadline = time.monotonic() + 3.0
        while True:
            with RunStore(Workspace(Path(self.workspace_root)).db_path, recover=False) as store:
                store.recover_interrupted()
                status = store.get_run(self.run_id).status
            if status != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.interrupted.emit(self.run_id, exitcode)


def _lower_priority(pid: int | None) -> None:
    """Training may take every core; the window's own process must still get scheduled promptly."""
    if pid is None or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5))
    except OSError:
        pass

"""The queue of jobs the app has launched: one (or ``max_running``) runs at a time, the rest wait."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from shpers_core.jobs.spec import JobSpec
from shpers_gui.workers.job_worker import JobWorker

WAITING, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED = (
    "waiting", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = (WAITING, RUNNING)

_keys = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One entry of the queue; ``run_id`` is known once the child has created the run."""

    spec: JobSpec
    run_id: str = ""
    key: int = field(default_factory=lambda: next(_keys))
    status: str = WAITING
    phase: str = ""
    done: int = 0
    total: int = 0
    started_at: float = 0.0
    phase_started_at: float = 0.0
    error: str = ""
    tokens_per_s: float = 0.0
    log: list[str] = field(default_factory=list)
    worker: JobWorker | None = None

    @property
    def label(self) -> str:
        return self.spec.name or f"{self.spec.method} #{self.key}"

    @property
    def fraction(self) -> float:
        if self.status == FINISHED:
            return 1.0
        return self.done / self.total if self.total else 0.0

    def eta_s(self) -> float | None:
        """Seconds left in the current phase, from its rate so far."""
        if self.status != RUNNING or not self.total or self.done <= 0:
            return None
        elapsed = time.monotonic() - self.phase_started_at
        return elapsed / self.done * (self.total - self.done)


class JobQueue(QObject):
    """Starts waiting jobs as running ones end and relays their events per job."""

    job_added = Signal(object)
    job_changed = Signal(object)
    job_step = Signal(object, str, int, float)  # job, series, step, loss
    job_validation = Signal(object, str, int, float)
    job_log = Signal(object, str)
    job_ended = Signal(object)

    def __init__(self, session, max_running: int = 1):
        super().__init__(session)
        self.session = session
        self.max_running = max_running
        self.jobs: list[Job] = []

    def submit(self, spec: JobSpec, run_id: str = "") -> Job:
        job = Job(spec, run_id=run_id)
        self.jobs.append(job)
        self.job_added.emit(job)
        self._start_waiting()
        return job

    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.status == RUNNING]

    def active(self) -> list[Job]:
        return [j for j in self.jobs if j.status in ACTIVE]

    def cancel(self, job: Job) -> None:
        if job.status == WAITING:
            self._end(job, CANCELLED)
        elif job.status == RUNNING and job.worker is not None:
            job.log.append("cancel requested; stopping at the next step")
            job.worker.cancel()
            self.job_changed.emit(job)

    def remove_ended(self) -> None:
        self.jobs = [j for j in self.jobs if j.status in ACTIVE]

    def cancel_all_and_wait(self, timeout_s: float = 30.0) -> None:
        """Cancel everything; a job that will not stop within ``timeout_s`` is killed."""
        for job in list(self.jobs):
            if job.status == WAITING:
                self._end(job, CANCELLED)
        workers = [j.worker for j in self.jobs if j.worker is not None and j.worker.isRunning()]
        for w in workers:
            w.cancel()
        deadline = time.monotonic() + timeout_s
        for w in workers:
            if not w.wait(max(0, int((deadline - time.monotonic()) * 1000))):
                w.kill()
                w.wait(5000)

    # -- internals --------------------------------------------------------------------------

    def _start_waiting(self) -> None:
        while len(self.running()) < self.max_running:
            waiting = [j for j in self.jobs if j.status == WAITING]
            if not waiting:
                return
            self._start(waiting[0])

    def _start(self, job: Job) -> None:
        job.status = RUNNING
        job.started_at = job.phase_started_at = time.monotonic()
        job.phase, job.done, job.total = "starting", 0, 0
        worker = JobWorker(job.spec, str(self.session.root), run_id=job.run_id or None, parent=self)
        job.worker = worker
        worker.started_run.connect(lambda rid, j=job: self._on_started(j, rid))
        worker.step.connect(lambda s, st, tot, loss, lr, j=job: self._on_step(j, s, st, tot, loss))
        worker.speed.connect(lambda rate, j=job: setattr(j, "tokens_per_s", rate))
        worker.validation.connect(lambda s, st, loss, j=job: self.job_validation.emit(j, s, st, loss))
        worker.progress.connect(lambda ph, d, t, j=job: self._on_progress(j, ph, d, t))
        worker.log.connect(lambda lvl, msg, j=job: self._on_log(j, f"[{lvl}] {msg}"))
        worker.finished_run.connect(lambda rid, m, j=job: self._end(j, FINISHED))
        worker.failed.connect(lambda rid, err, tb, j=job: self._end(j, FAILED, err, tb))
        worker.cancelled.connect(lambda rid, j=job: self._end(j, CANCELLED))
        worker.interrupted.connect(lambda rid, code, j=job: self._end(
            j, INTERRUPTED, f"the job process died (exit code {code}); the run is marked interrupted"))
        worker.ended.connect(lambda j=job: self._on_worker_ended(j))
        self.job_changed.emit(job)
        worker.start()

    def _on_started(self, job: Job, run_id: str) -> None:
        job.run_id = run_id
        self._on_log(job, f"run {run_id} started")
        self.session.runs_changed.emit()

    def _set_phase(self, job: Job, phase: str, done: int, total: int) -> None:
        if phase != job.phase:
            job.phase, job.phase_started_at = phase, time.monotonic()
        job.done, job.total = done, total

    def _on_step(self, job: Job, series: str, step: int, total: int, loss: float) -> None:
        self._set_phase(job, "training", step, total)
        self.job_step.emit(job, series, step, loss)
        self.job_changed.emit(job)

    def _on_progress(self, job: Job, phase: str, done: int, total: int) -> None:
        self._set_phase(job, phase, done, total)
        self.job_changed.emit(job)

    def _on_log(self, job: Job, line: str) -> None:
        job.log.append(line)
        self.job_log.emit(job, line)

    def _end(self, job: Job, status: str, error: str = "", tb: str = "") -> None:
        if job.status not in ACTIVE:
            return
        job.status, job.error = status, error
        self._on_log(job, f"{status}" + (f": {error}" if error else ""))
        if tb:
            self._on_log(job, tb)
        self.job_changed.emit(job)
        self.job_ended.emit(job)
        self.session.runs_changed.emit()

    def _on_worker_ended(self, job: Job) -> None:
        if job.status in ACTIVE:  # ended without a terminal event: treat as interrupted
            self._end(job, INTERRUPTED, "the job process ended without a result")
        if job.worker is not None:
            job.worker.wait()
            job.worker.deleteLater()
            job.worker = None
        self._start_waiting()

"""The queue of jobs the app has launched: one (or ``max_running``) runs at a time, the rest wait."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from shpers_core.errors import UserError
from shpers_core.jobs.estimate import format_duration
from shpers_core.jobs.spec import JobSpec
from shpers_core.methods.registry import get_method
from shpers_core.store import CANCELLED, FAILED, FINISHED, INTERRUPTED, RUNNING  # noqa: F401 - the app's statuses
from shpers_gui.workers.job_worker import JobWorker

WAITING = "waiting"
"""The app's own status: queued in this window, not yet a run in the store."""
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
    run_name: str = ""
    logged_tenth: int = 0
    estimate: object | None = None
    """The launcher's :class:`JobEstimate`, whose evaluation part the ETA adds while training."""
    builds_on: Job | None = None
    """A study row's job whose run this one builds on (its pass's per-persona or unified LoRA row): named as
    the job's source when it starts, so that no other run finished meanwhile takes its place."""

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

    def job_eta(self) -> tuple[float | None, bool]:
        """(seconds left in the whole job, whether that includes everything left).

        While training, evaluation is still to come: its time is the estimate's (test turns at the
        measured turns/s) when known; otherwise the figure is a lower bound.
        """
        phase_left = self.eta_s()
        if phase_left is None:
            return None, False
        if self.phase != "training":
            return phase_left, True
        e = self.estimate
        if e is None or not getattr(e, "test_turns", 0):
            return phase_left, e is not None
        if not getattr(e, "turns_per_s", None):
            return phase_left, False
        return phase_left + e.test_turns / e.turns_per_s, True


def spec_to_run(job: Job) -> JobSpec:
    """``job.spec``, naming the run of ``job.builds_on`` where that job finished."""
    source = job.builds_on
    if source is None or job.spec.source_run or source.status != FINISHED or not source.run_id:
        return job.spec
    return job.spec.replace(source_run=source.run_id)


def queue_summary(jobs: list[Job]) -> str:
    """The queue in a few words for the window title, e.g. "3 jobs to go, about 25 min left"; empty when idle.

    The time counts a running job's ETA (or its estimate until it has one) and each waiting job's estimate;
    it is left out when any of them is unknown.
    """
    active = [j for j in jobs if j.status in ACTIVE]
    if not active:
        return ""
    left, known = 0.0, True
    for job in active:
        eta, complete = job.job_eta() if job.status == RUNNING else (None, False)
        if eta is None or not complete:
            eta = job.estimate.seconds if job.estimate is not None else None
        if eta is None:
            known = False
        else:
            left += eta
    what = f"{len(active)} job{'s' if len(active) > 1 else ''} to go"
    return what + (f", about {format_duration(left)} left" if known else "")


class JobQueue(QObject):
    """Starts waiting jobs as running ones end and relays their events per job."""

    job_added = Signal(object)
    job_changed = Signal(object)
    job_step = Signal(object, str, int, float)  # job, series, step, loss
    job_validation = Signal(object, str, int, float)
    job_log = Signal(object, str)
    job_ended = Signal(object)
    jobs_reordered = Signal()

    def __init__(self, session, max_running: int = 1):
        super().__init__(session)
        self.session = session
        self.max_running = max_running
        self.jobs: list[Job] = []

    def submit(self, spec: JobSpec, run_id: str = "", estimate=None) -> Job:
        job = Job(spec, run_id=run_id, estimate=estimate)
        self.jobs.append(job)
        self.job_added.emit(job)
        self._start_waiting()
        return job

    def submit_once(self, spec: JobSpec, estimate=None) -> Job:
        """Queue ``spec`` unless a job for the very same spec is waiting or running; return that job then.

        A study continued from the Launch tab and the jobs offered after a restart can name the same
        rows; without this each would run twice.
        """
        same = next((j for j in self.jobs if j.status in ACTIVE and j.spec == spec), None)
        return same if same is not None else self.submit(spec, estimate=estimate)

    def resume(self, run_id: str, spec: JobSpec) -> Job:
        """Continue ``run_id`` from its checkpoint, in the row of the job that ran it if there is one."""
        job = next((j for j in self.jobs if j.run_id == run_id), None)
        if job is None:
            return self.submit(spec, run_id=run_id)
        if job.status in ACTIVE:
            return job
        job.status, job.error, job.done, job.total = WAITING, "", 0, 0
        self._on_log(job, "resume requested; continuing from the last checkpoint")
        self.job_changed.emit(job)
        self._start_waiting()
        return job

    def run_next(self, job: Job) -> None:
        """Move a waiting job ahead of the other waiting ones: it starts when a running job ends.

        Refused (:class:`UserError`) while a job it would build on waits: it would train its own copy first.
        A job that names the finished run it builds on waits for none.
        """
        if job.status != WAITING:
            raise UserError(f"“{job.label}” is {job.status}: only a waiting job can run next")
        sources = () if job.spec.source_run else get_method(job.spec.method).sources(job.spec.method_params)
        before = next((j for j in self.jobs if j is not job and j.status == WAITING and j.spec.method in sources
                       and j.spec.base_model == job.spec.base_model), None)
        if before is not None:
            raise UserError(f"“{job.label}” builds on a {before.spec.method} run, and “{before.label}” is still "
                            "waiting: moved ahead of it, the job would train a copy of that run first. Move "
                            f"“{before.label}” first.")
        self.jobs.remove(job)
        first_waiting = next((i for i, j in enumerate(self.jobs) if j.status == WAITING), len(self.jobs))
        self.jobs.insert(first_waiting, job)
        self.jobs_reordered.emit()
        self._on_log(job, "moved to run next")
        self._start_waiting()

    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.status == RUNNING]

    def active(self) -> list[Job]:
        return [j for j in self.jobs if j.status in ACTIVE]

    def cancel(self, job: Job) -> None:
        if job.status == WAITING:
            self._end(job, CANCELLED)
        elif job.status == RUNNING and job.worker is not None:
            self._on_log(job, "cancel requested; stopping at the next step")
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
            # A resumed job whose previous process is still winding down waits for it to end.
            waiting = [j for j in self.jobs if j.status == WAITING and j.worker is None]
            if not waiting:
                return
            if self.name_source(waiting[0]):
                self._start(waiting[0])

    def name_source(self, job: Job) -> bool:
        """Name the run of ``job.builds_on`` as the job's source; False (the job failed) when that job ended
        without a run: the merge or prefix would build on some other run instead."""
        job.spec = spec_to_run(job)
        source = job.builds_on
        if source is None or job.spec.source_run or source.status in ACTIVE:
            return True
        self._end(job, FAILED, f"not started: it builds on “{source.label}”, which {source.status}; run that "
                               "again first (Run the whole study offers to continue the study)")
        return False

    def _start(self, job: Job) -> None:
        job.status = RUNNING
        job.started_at = job.phase_started_at = time.monotonic()
        job.phase, job.done, job.total = "starting", 0, 0
        from shpers_gui import engine

        runner = engine.get("runner_for")(*getattr(self.session, "executor", ("local", "")))
        worker = JobWorker(job.spec, str(self.session.root), run_id=job.run_id or None, parent=self, runner=runner)
        job.worker = worker
        worker.started_run.connect(lambda rid, j=job: self._on_started(j, rid))
        worker.step.connect(lambda s, st, tot, loss, lr, j=job: self._on_step(j, s, st, tot, loss))
        worker.speed.connect(lambda rate, j=job: setattr(j, "tokens_per_s", rate))
        worker.validation.connect(lambda s, st, loss, j=job: self._on_validation(j, s, st, loss))
        worker.progress.connect(lambda ph, d, t, j=job: self._on_progress(j, ph, d, t))
        worker.log.connect(lambda lvl, msg, j=job: self._on_log(j, f"[{lvl}] {msg}"))
        worker.finished_run.connect(lambda rid, m, j=job: self._end(j, FINISHED))
        worker.failed.connect(lambda rid, err, tb, j=job: self._end(j, FAILED, err, tb))
        worker.cancelled.connect(lambda rid, j=job: self._end(j, CANCELLED))
        worker.interrupted.connect(lambda rid, code, j=job: self._end(
            j, INTERRUPTED, f"the job process died (exit code {code}); the run is marked interrupted"))
        worker.ended.connect(lambda j=job, w=worker: self._on_worker_ended(j, w))
        self.job_changed.emit(job)
        worker.start()

    def _on_started(self, job: Job, run_id: str) -> None:
        job.run_id = run_id
        try:
            job.run_name = self.session.store().get_run(run_id).label
        except Exception:  # noqa: BLE001 - the name is cosmetic; the id is shown instead
            job.run_name = ""
        self._on_log(job, f"run {run_id} started" + (f" as “{job.run_name}”" if job.run_name else ""))
        self.session.runs_changed.emit()

    def _on_validation(self, job: Job, series: str, step: int, loss: float) -> None:
        self._on_log(job, f"validation loss {loss:.4f} at step {step} ({series})")
        self.job_validation.emit(job, series, step, loss)

    def _set_phase(self, job: Job, phase: str, done: int, total: int) -> None:
        if phase != job.phase:
            job.phase, job.phase_started_at, job.logged_tenth = phase, time.monotonic(), 0
            self._on_log(job, f"phase: {phase}" + (f" (0 of {total})" if total else ""))
        job.done, job.total = done, total

    def _log_tenths(self, job: Job, what: str) -> None:
        """One log line per tenth of a phase: the log shows progress without a line per step."""
        tenth = job.done * 10 // job.total if job.total else 0
        if tenth > job.logged_tenth:
            job.logged_tenth = tenth
            self._on_log(job, f"{job.phase}: {job.done} of {job.total}{what}")

    def _on_step(self, job: Job, series: str, step: int, total: int, loss: float) -> None:
        self._set_phase(job, "training", step, total)
        self._log_tenths(job, f" steps, loss {loss:.4f}")
        self.job_step.emit(job, series, step, loss)
        self.job_changed.emit(job)

    def _on_progress(self, job: Job, phase: str, done: int, total: int) -> None:
        self._set_phase(job, phase, done, total)
        self._log_tenths(job, "")
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

    def _on_worker_ended(self, job: Job, worker: JobWorker) -> None:
        if job.status == RUNNING:  # ended without a terminal event: treat as interrupted
            self._end(job, INTERRUPTED, "the job process ended without a result")
        worker.wait()
        worker.deleteLater()
        if job.worker is worker:
            job.worker = None
        self._start_waiting()

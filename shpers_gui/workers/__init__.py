"""Off-GUI-thread work: :class:`JobWorker` for training jobs, :class:`CallWorker` for short calls."""

from shpers_gui.workers.call_worker import CallWorker, run_call
from shpers_gui.workers.job_worker import JobWorker

__all__ = ["CallWorker", "JobWorker", "run_call"]

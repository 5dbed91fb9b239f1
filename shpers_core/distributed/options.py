"""How a job runs on Ray (address, resources, retries, shared folder), as the driver and its workers see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RayOptions:
    """How to run on Ray. ``gpus`` None: one per training job where the cluster has GPUs, none else."""

    address: str | None = None
    gpus: float | None = None
    cpus: float = 1.0
    memory_gb: float = 0.0
    max_retries: int = 2
    """Times a job is started again after its worker was lost, from the last checkpoint."""
    shared_folder: str | None = None
    """A folder every node mounts at this path: checkpoints and finished adapters (and the run folders a
    job reads) go through it instead of Ray's object store, for large models."""
    worker_env: dict[str, str] = field(default_factory=dict)
    """Environment variables of the job's worker process (e.g. ``SHPERS_CACHE``, ``HF_TOKEN``)."""


# The options of the Ray job this worker process runs, for the data-parallel workers it starts.
_WORKER_OPTIONS: RayOptions | None = None


def set_worker_options(options: RayOptions | None) -> None:
    """Record (None: forget) the options of the Ray job this worker process runs."""
    global _WORKER_OPTIONS
    _WORKER_OPTIONS = options


def worker_options() -> RayOptions:
    """The options of the Ray job this process runs; the defaults in a local job."""
    return _WORKER_OPTIONS or RayOptions()


def shared_path(options: RayOptions, run_id: str) -> Path | None:
    """The run's own folder in the shared folder (the driver removes it when the job ends); None without one."""
    return Path(options.shared_folder).expanduser() / f"shpers-run-{run_id}" if options.shared_folder else None

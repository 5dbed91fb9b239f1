"""Run a job on a Ray cluster, with the driver (this process) as the only writer of the workspace.

The driver checks what it can, records the run, ships the worker a trimmed copy of the store and the
run folders the job reads, and relays the worker's events into the same sinks a local job has (the
:class:`StoreSink`, the CLI's progress, the app). Checkpoints come back while the job runs, so a
worker lost mid-job is retried from the last checkpoint the driver holds; the finished run's files
and rows come back at the end and the driver writes them into the workspace.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from shpers_core.atomic import atomic_write_text
from shpers_core.data.library import remember
from shpers_core.distributed.channel import new_channel
from shpers_core.distributed.connection import ClusterError, connect
from shpers_core.distributed.models import model_ref
from shpers_core.distributed.options import RayOptions, shared_path
from shpers_core.distributed.placement import Placed, placement_line
from shpers_core.distributed.transfer import merge_back, put_shared, read_tree, snapshot, unpack, write_files
from shpers_core.distributed.worker import run_on_worker
from shpers_core.errors import UserError
from shpers_core.events import JobCancelled, Log, Reporter
from shpers_core.jobs.runner import (
    check_base_model,
    check_cluster_count,
    load_dataset_for,
    select_personas,
)
from shpers_core.jobs.sources import find_matching_run, source_runs
from shpers_core.jobs.spec import JobSpec
from shpers_core.methods.registry import get_method
from shpers_core.store import RunStore, StoreSink
from shpers_core.workspace import Workspace

log = logging.getLogger(__name__)

# Methods whose finished runs other methods build on (merges on per-persona, prefixes on unified).
SOURCE_METHODS = ("per_persona_lora", "unified_lora")


class RemoteJobError(RuntimeError):
    """A job failed on a worker with an internal error; the message holds the worker's traceback."""


class JobInterrupted(UserError):
    """The worker was lost more often than the retries allow; the run is interrupted and resumable."""


@dataclass(frozen=True)
class RayRunner:
    """:func:`run_on_ray` with :func:`run_job`'s signature; pickles, so a job's child process can take it."""

    address: str | None = None
    shared_folder: str | None = None

    def __call__(self, spec, workspace, reporter, *, run_id: str | None = None, dataset=None, **_ignored) -> str:
        options = RayOptions(address=self.address or None, shared_folder=self.shared_folder or None)
        return run_on_ray(spec, workspace, reporter, options=options, dataset=dataset, run_id=run_id)


# Where the app runs its jobs: remembered per workspace (a cluster belongs to a project, not a window).
EXECUTOR_FILE = "executor.json"


def load_executor_choice(workspace: Workspace) -> tuple[str, str]:
    """``("local", "")`` or ``("ray", address)``; the local choice when nothing valid is saved."""
    try:
        saved = json.loads((workspace.root / EXECUTOR_FILE).read_text())
        kind, address = str(saved.get("executor", "local")), str(saved.get("ray_address", ""))
    except (OSError, ValueError, AttributeError):
        return "local", ""
    return (kind, address.strip()) if kind in ("local", "ray") else ("local", "")


def save_executor_choice(workspace: Workspace, kind: str, address: str = "") -> None:
    atomic_write_text(workspace.root / EXECUTOR_FILE, json.dumps({"executor": kind, "ray_address": address.strip()}))


def runner_for(kind: str, address: str = ""):
    """The runner for a saved choice: None (a local job) or a :class:`RayRunner`."""
    return RayRunner(address.strip() or None) if kind == "ray" else None


# --- the cluster -------------------------------------------------------------------------------

def job_resources(method: str, options: RayOptions) -> dict[str, float]:
    """Ray resources for one job of ``method``: a GPU for a training job where the cluster has one."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    gpus = options.gpus
    if gpus is None:
        gpus = 1.0 if get_method(method).trains and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    out = {"num_cpus": float(options.cpus), "num_gpus": float(gpus)}
    if options.memory_gb:
        out["memory"] = float(options.memory_gb) * 2**30
    return out


def check_resources(resources: dict[str, float]) -> None:
    """:class:`ClusterError` naming what is missing when no node of the cluster could take the job."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray

    names = {"num_cpus": ("CPU", "CPUs", 1), "num_gpus": ("GPU", "GPUs", 1), "memory": ("memory", "GiB of memory", 2**30)}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, asked in resources.items():
        if not asked:
            continue
        res, label, unit = names[key]
        best = max((n.get(res, 0.0) for n in nodes), default=0.0)
        if best < asked:
            raise ClusterError(f"the job asks for {asked / unit:g} {label} but no node of the Ray cluster has that "
                               f"(the largest has {best / unit:g}); lower --gpus/--cpus/--memory-gb or add a node")


# --- the worker ---------------------------------------------------------------------------------

# --- the driver ---------------------------------------------------------------------------------

_DATASETS: dict[str, object] = {}


def _dataset_ref(dataset):
    """The dataset in the object store, put once per content hash (a study's jobs share it)."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray

    key = dataset.content_hash()
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = ray.put(dataset)
    return _DATASETS[key]


def _lost_worker_errors() -> tuple[type[BaseException], ...]:
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    from ray import exceptions as rx

    return tuple(getattr(rx, name) for name in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                                "OwnerDiedError", "TaskUnschedulableError", "RaySystemError",
                                                "LocalRayletDiedError") if hasattr(rx, name))


def run_on_ray(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, options: RayOptions | None = None,
               dataset=None, run_id: str | None = None) -> str:
    """Run ``spec`` on Ray and return its run id; ``run_id`` resumes a stored run. Same contract as
    :func:`shpers_core.jobs.runner.run_job`: mistakes found before the run is recorded write nothing."""
    options = options or RayOptions()
    mp, train = spec.method_params, spec.train
    with RunStore(workspace.db_path) as store:
        if dataset is None:
            dataset = load_dataset_for(spec, workspace, store.get_run(run_id).dataset_hash if run_id else "")
    personas = select_personas(spec, dataset)
    check_cluster_count(spec.method, mp, personas)
    check_base_model(spec.base_model)
    connect(options.address)
    resources = job_resources(spec.method, options)
    check_resources(resources)
    if options.shared_folder and not Path(options.shared_folder).expanduser().is_dir():
        raise ClusterError(f"the shared folder {options.shared_folder} is not a folder on this machine "
                           "(every node must mount it at that path)")

    model = model_ref(spec.base_model)  # before the run is recorded: a model this machine cannot read fails here
    with RunStore(workspace.db_path) as store:
        spec, chosen = source_runs(store, spec, spec.base_model, dataset.content_hash(), personas)
        if run_id is None:
            if not spec.dataset_path:
                remember(workspace, dataset)
            run_id = store.create_run(spec.method, spec.to_dict(), spec.base_model, dataset.content_hash(), personas,
                                      seed=train.seed, dataset_path=str(spec.dataset_path or workspace.dataset_path),
                                      name=spec.name)
        store.start_run(run_id)
        # The worker finds the one run of each method it is sent: the job's named one, else the newest.
        sources = [found for m in SOURCE_METHODS
                   if (found := chosen[m] if m in chosen
                       else find_matching_run(store, m, spec.base_model, dataset.content_hash(), personas))]
        sink = StoreSink(workspace.db_path, run_id)
        job_reporter = Reporter(sink, reporter.should_stop)
        job_reporter.add_sink(reporter.emit)
        try:
            result = _drive(spec, workspace, store, run_id, sources, dataset, model, resources, options, job_reporter)
        finally:
            sink.close()
        if result is None:
            # After the sink's last write: its heartbeat would revive an interrupted run.
            reason = (f"interrupted: the Ray worker was lost {options.max_retries + 1} times; "
                      f"`shpers runs resume {run_id}` continues it from its last checkpoint")
            store.update_run(run_id, error=reason)
            store.set_status(run_id, "interrupted")
            raise JobInterrupted(f"run {run_id} {reason}")
        _finish(workspace, store, run_id, result, job_reporter)
    return run_id


def _drive(spec, workspace, store, run_id, sources, dataset, model, resources, options, reporter) -> dict | None:
    """The job's result, or None when its worker was lost more often than the retries allow."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    task = ray.remote(run_on_worker)
    channel = new_channel()
    data = _dataset_ref(dataset)
    attempts = options.max_retries + 1
    extra = {"runtime_env": {"env_vars": dict(options.worker_env)}} if options.worker_env else {}
    shared = shared_path(options, run_id)
    if shared is not None:
        reporter.log(f"checkpoints and adapters go through the shared folder {shared}")
    try:
        for attempt in range(1, attempts + 1):
            seed = snapshot(workspace.db_path, [run_id, *sources])
            files = read_tree(workspace.root, Path("runs") / run_id)
            for src in sources:
                files.update(read_tree(workspace.root, Path("runs") / src / "adapters"))
            sent = files if shared is None else put_shared(shared, files)
            ref = task.options(max_retries=0, **resources, **extra).remote(spec.to_dict(), run_id, seed, sent, data,
                                                                            channel, attempt, model, options)
            stop_sent, beat = False, time.monotonic()

            def relay(items) -> None:
                for kind, payload in items:
                    if kind == "event":
                        if isinstance(payload, Placed):
                            reporter.log(placement_line(payload))
                        reporter.emit(payload)
                    elif kind in ("files", "shared"):
                        write_files(workspace.root, unpack((kind, payload), shared))

            while True:
                ready, _ = ray.wait([ref], timeout=0.25)
                try:
                    relay(ray.get(channel.take.remote(), timeout=120))
                except Exception:  # noqa: BLE001 - the channel lives on the driver's node; ended only at exit
                    log.exception("taking events of run %s", run_id)
                if not stop_sent and reporter.should_stop():
                    channel.request_stop.remote()
                    stop_sent = True
                if time.monotonic() - beat > 10:
                    store.heartbeat(run_id)  # a long evaluation sends no events; the run must not look dead
                    beat = time.monotonic()
                if ready:
                    break
            relay(ray.get(channel.take.remote(), timeout=120))
            try:
                result = ray.get(ref)
                if isinstance(result["files"], str):
                    result["files"] = unpack(("shared", result["files"]), shared)
                return result
            except _lost_worker_errors() as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                more = "retrying from the last checkpoint the driver holds" if attempt < attempts else "no retries left"
                reporter.emit(Log(f"worker lost on attempt {attempt} of {attempts} ({type(exc).__name__}: {first}); "
                                  f"{more}", "warning"))
    finally:
        ray.kill(channel)
        if shared is not None:
            # The batches the driver took are gone already; what is left (the files sent to the
            # worker, a lost worker's last batches) is read no more.
            shutil.rmtree(shared, ignore_errors=True)
    return None


def _finish(workspace, store, run_id: str, result: dict, reporter: Reporter) -> None:
    write_files(workspace.root, result["files"])
    merge_back(store, result["db"], run_id, result["new_runs"])
    status = store.get_run(run_id).status
    outcome, message = result["outcome"], result["message"]
    if outcome == "finished":
        return
    if status in ("running", "queued"):
        # Refused on the worker before its run_job recorded anything (e.g. a target module the model lacks).
        (store.cancel_run(run_id) if outcome == "cancelled" else store.fail_run(run_id, message))
    if outcome == "cancelled":
        raise JobCancelled()
    if outcome == "user_error":
        raise UserError(message)
    log.error("run %s failed on its Ray worker:\n%s", run_id, result["traceback"])
    raise RemoteJobError(message)

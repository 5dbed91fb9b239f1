"""One LoRA adapter trained data-parallel over K Ray Train workers (``TorchTrainer``; gloo on CPUs,
NCCL on GPUs).

Every worker holds the base model and the same freshly initialised adapter; each takes its share of
every global batch, and the gradients are summed over the workers before each step (see
:class:`shpers_core.training.fit.DataParallel`), so every worker steps with the gradient of the
whole batch: the adapter equals a one-process run with the same ``batch_size`` within float
tolerance (without LoRA dropout, whose draws follow each worker's rows).

The caller is the job (here, or itself on a Ray worker). Worker 0's events and checkpoints come back
through a channel as they happen; its checkpoints go into the job's checkpoint folder, so a cancel or
a lost job resumes from them, and every worker starts from the one the job holds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from shpers_core.distributed.channel import RemoteReporter, new_channel
from shpers_core.distributed.connection import connect
from shpers_core.distributed.models import load_on_worker, model_ref, worker_dtype, worker_precision
from shpers_core.distributed.options import shared_path, worker_options
from shpers_core.distributed.scratch import worker_scratch
from shpers_core.distributed.transfer import read_tree, unpack, write_files
from shpers_core.distributed.watcher import CheckpointWatcher
from shpers_core.events import JobCancelled, Log, Reporter
from shpers_core.third_party import hide_third_party_deprecations
from shpers_core.training.fit import DataParallel, fit_adapter

log = logging.getLogger(__name__)


class TorchDataParallel(DataParallel):
    """:class:`DataParallel` over the ``torch.distributed`` process group Ray Train set up."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def share(self, rows: list) -> list:
        return rows[self.rank::self.world]

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def sum_gradients(self, weights: list[torch.nn.Parameter]) -> None:
        # One flat buffer, one collective: per-tensor all-reduces cost a round trip each.
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in weights]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(weights, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def any_stop(self, stop: bool) -> bool:
        return bool(self.all_sum(torch.tensor(1.0 if stop else 0.0)).item() > 0)


def _train_worker(config: dict) -> None:
    """Ray Train's loop on each worker: the shared fit with this worker's share of every batch."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray.train


    hide_third_party_deprecations()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    channel = config["channel"]
    # Worker 0 speaks for all (events, checkpoints, the result); a stop it hears reaches the rest
    # through DataParallel.any_stop at the next step.
    reporter = RemoteReporter(channel) if rank == 0 else Reporter()
    if rank == 0:
        # The driver learns worker 0's process (a test kills it, as a crashed node would).
        reporter.send(("worker", os.getpid()))
    with worker_scratch("ddp") as scratch:
        watcher = None
        try:
            write_files(scratch, config["checkpoint_files"])
            checkpoint_dir = scratch / config["checkpoint_rel"]
            if rank == 0:
                watcher = CheckpointWatcher(scratch, config["run_id"], reporter.send, shared=config["shared"])
                watcher.start()
            base = load_on_worker(config["model"], config["device"], config["dtype"], reporter.log)
            if rank == 0:
                reporter.log(worker_precision(base, config["dtype"]))
            outcome = "finished"
            try:
                result = fit_adapter(base.model, config["pad_id"], config["train"], config["val"], config["lora"],
                                     config["train_params"], reporter, checkpoint_dir=checkpoint_dir,
                                     series=config["series"], data_parallel=TorchDataParallel(rank, world))
            except JobCancelled:
                outcome, result = "cancelled", None
            except Exception as exc:
                # Worker 0's own error (a diverged loss is a UserError) reaches the job as itself, not
                # as Ray Train's wrapper; the group then ends.
                if rank == 0:
                    watcher.stop()
                    try:
                        reporter.send(("result", {"outcome": "failed", "error": exc}))
                    except Exception:  # noqa: BLE001 - an error that does not pickle: Ray Train's report stands
                        log.exception("sending worker 0's error")
                raise
            if rank == 0:
                watcher.stop()
                watcher.scan()  # the checkpoint written on the way out
                reporter.send(("result", {"outcome": outcome, "result": result}))
        finally:
            if rank == 0:
                reporter.close()


def _lost(exc: BaseException) -> bool:
    """Whether Ray Train's failure is a worker process or node that went away (not an error of the loop)."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    from ray import exceptions as rx

    kinds = tuple(getattr(rx, name) for name in ("RayActorError", "ActorDiedError", "WorkerCrashedError",
                                                 "NodeDiedError", "OwnerDiedError", "LocalRayletDiedError")
                  if hasattr(rx, name))
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        # Ray Train 2 reports a dead worker as a failed health check inside a WorkerGroupError.
        if isinstance(e, kinds) or type(e).__name__ == "WorkerHealthCheckFailedError":
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None), getattr(e, "health_check_failure", None),
                 *getattr(e, "worker_failures", {}).values()]
    return False


def fit_data_parallel(ctx, train, val, name: str, workers: int, series: str = "train"):
    """Train the adapter ``name`` of the job ``ctx`` on ``workers`` Ray Train workers; a ``FitResult``.

    A worker lost mid-training (its process or node gone) starts the whole group again from the last
    checkpoint the job holds, up to the Ray job's ``--retries`` (2 in a local job).
    """
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    if not ray.is_initialized():
        connect(None)
    options = worker_options()
    attempts = options.max_retries + 1
    model = model_ref(ctx.spec.base_model)
    shared = shared_path(options, ctx.run_id)
    for attempt in range(1, attempts + 1):
        outcome, failure = _fit_once(ctx, train, val, name, workers, series, model, shared, attempt)
        if failure is not None and outcome is None and _lost(failure) and attempt < attempts:
            first = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
            ctx.reporter.emit(Log(f"a Ray Train worker was lost on attempt {attempt} of {attempts} ({first}); "
                                  "restarting the group from the last checkpoint the job holds", "warning"))
            continue
        return _result(ctx, name, outcome, failure)
    raise AssertionError("unreachable")


def _result(ctx, name: str, outcome: dict | None, failure: BaseException | None):
    if outcome is not None and outcome["outcome"] == "failed":
        raise outcome["error"]
    if failure is not None and outcome is None:
        first = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
        raise RuntimeError(f"data-parallel training of {name} failed on Ray Train: {first}") from failure
    if outcome is None or outcome["outcome"] == "cancelled":
        raise JobCancelled()
    result = outcome["result"]
    ctx.note_training(result)
    return result


def _fit_once(ctx, train, val, name, workers, series, model, shared, attempt):
    """One Ray Train run from the checkpoint the job holds now: (worker 0's outcome or None, Ray Train's
    failure or None)."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer


    use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    checkpoint_dir = ctx.checkpoint_dir(name)
    root = ctx.workspace.root
    checkpoint_rel = checkpoint_dir.relative_to(root)
    channel = new_channel()
    config = {"channel": channel, "run_id": ctx.run_id, "checkpoint_rel": str(checkpoint_rel),
              "checkpoint_files": read_tree(root, checkpoint_rel), "model": model, "shared": shared,
              "device": "cuda" if use_gpu else "cpu", "dtype": worker_dtype(ctx.spec.dtype, ctx.base.dtype, use_gpu),
              "pad_id": ctx.pad_id,
              "train": train, "val": val, "lora": ctx.lora, "train_params": ctx.train, "series": series}
    scratch = Path(tempfile.mkdtemp(prefix="shpers-ray-train-"))
    trainer = TorchTrainer(
        _train_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=f"shpers-{ctx.run_id}-{name}-{attempt}", storage_path=str(scratch)))
    ctx.reporter.log(f"training {name} data-parallel on {workers} Ray Train workers "
                     f"({'GPUs, NCCL' if use_gpu else 'CPUs, gloo'}; {len(train)} examples, global batch "
                     f"{ctx.train.batch_size}){'' if attempt == 1 else f', attempt {attempt}'}")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="ray-train")
    thread.start()
    outcome, stop_sent = None, False

    def relay(items) -> None:
        nonlocal outcome
        for kind, payload in items:
            if kind == "event":
                ctx.reporter.emit(payload)
            elif kind in ("files", "shared"):
                write_files(root, unpack((kind, payload), shared))
            elif kind == "result":
                outcome = payload
            elif kind == "worker":
                _WORKER_PIDS.append(payload)

    try:
        while True:
            thread.join(timeout=0.25)
            relay(ray.get(channel.take.remote(), timeout=120))
            if not stop_sent and ctx.reporter.should_stop():
                channel.request_stop.remote()
                stop_sent = True
            if not thread.is_alive():
                break
        relay(ray.get(channel.take.remote(), timeout=120))
    finally:
        ray.kill(channel)
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome, (failure[0] if failure else None)


_WORKER_PIDS: list[int] = []
"""Worker 0's process ids in this process's data-parallel runs, newest last (for tests)."""

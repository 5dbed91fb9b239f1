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
import shutil
import tempfile
import threading
from pathlib import Path

import torch

from shpers_core.training.fit import DataParallel

log = logging.getLogger(__name__)


class TorchDataParallel(DataParallel):
    """:class:`DataParallel` over the ``torch.distributed`` process group Ray Train set up."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def share(self, rows: list) -> list:
        return rows[self.rank::self.world]

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def sum_gradients(self, weights: list[torch.nn.Parameter]) -> None:
        import torch.distributed as dist

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
    import ray.train

    from shpers_core.distributed.channel import RemoteReporter
    from shpers_core.distributed.ray_executor import _CheckpointWatcher
    from shpers_core.distributed.shards import _base
    from shpers_core.distributed.transfer import write_files
    from shpers_core.events import JobCancelled, Reporter
    from shpers_core.third_party import hide_third_party_deprecations
    from shpers_core.training.fit import fit_adapter

    hide_third_party_deprecations()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    channel = config["channel"]
    # Worker 0 speaks for all (events, checkpoints, the result); a stop it hears reaches the rest
    # through DataParallel.any_stop at the next step.
    reporter = RemoteReporter(channel) if rank == 0 else Reporter()
    scratch = Path(tempfile.mkdtemp(prefix="shpers-ddp-"))
    watcher = None
    try:
        write_files(scratch, config["checkpoint_files"])
        checkpoint_dir = scratch / config["checkpoint_rel"]
        if rank == 0:
            watcher = _CheckpointWatcher(scratch, config["run_id"], reporter.send)
            watcher.start()
        base = _base(config["base_model"], config["device"], config["dtype"])
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
        shutil.rmtree(scratch, ignore_errors=True)


def fit_data_parallel(ctx, train, val, name: str, workers: int, series: str = "train"):
    """Train the adapter ``name`` of the job ``ctx`` on ``workers`` Ray Train workers; a ``FitResult``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from shpers_core.distributed.channel import new_channel
    from shpers_core.distributed.ray_executor import connect
    from shpers_core.distributed.transfer import read_tree, write_files
    from shpers_core.events import JobCancelled

    if not ray.is_initialized():
        connect(None)
    use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    checkpoint_dir = ctx.checkpoint_dir(name)
    root = ctx.workspace.root
    checkpoint_rel = checkpoint_dir.relative_to(root)
    channel = new_channel()
    config = {"channel": channel, "run_id": ctx.run_id, "checkpoint_rel": str(checkpoint_rel),
              "checkpoint_files": read_tree(root, checkpoint_rel), "base_model": ctx.spec.base_model,
              "device": "cuda" if use_gpu else "cpu", "dtype": ctx.base.dtype, "pad_id": ctx.pad_id,
              "train": train, "val": val, "lora": ctx.lora, "train_params": ctx.train, "series": series}
    scratch = Path(tempfile.mkdtemp(prefix="shpers-ray-train-"))
    trainer = TorchTrainer(
        _train_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=f"shpers-{ctx.run_id}-{name}", storage_path=str(scratch)))
    ctx.reporter.log(f"training {name} data-parallel on {workers} Ray Train workers "
                     f"({'GPUs, NCCL' if use_gpu else 'CPUs, gloo'}; {len(train)} examples, global batch "
                     f"{ctx.train.batch_size})")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="ray-train")
    thread.start()
    outcome, stop_sent = None, False
    try:
        while True:
            thread.join(timeout=0.25)
            for kind, payload in ray.get(channel.take.remote(), timeout=120):
                if kind == "event":
                    ctx.reporter.emit(payload)
                elif kind == "files":
                    write_files(root, payload)
                elif kind == "result":
                    outcome = payload
            if not stop_sent and ctx.reporter.should_stop():
                channel.request_stop.remote()
                stop_sent = True
            if not thread.is_alive():
                break
        for kind, payload in ray.get(channel.take.remote(), timeout=120):
            if kind == "files":
                write_files(root, payload)
            elif kind == "result":
                outcome = payload
    finally:
        ray.kill(channel)
        shutil.rmtree(scratch, ignore_errors=True)
    if outcome is not None and outcome["outcome"] == "failed":
        raise outcome["error"]
    if failure and outcome is None:
        first = (str(failure[0]).strip().splitlines() or [type(failure[0]).__name__])[0]
        raise RuntimeError(f"data-parallel training of {name} failed on Ray Train: {first}") from failure[0]
    if outcome is None or outcome["outcome"] == "cancelled":
        raise JobCancelled()
    result = outcome["result"]
    ctx.note_training(result)
    return result

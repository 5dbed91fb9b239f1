"""Per-persona LoRA over K Ray workers: each trains its slice of the personas with the batched engine.

The batched engine trains every adapter as a separate run would (its own batch order, optimiser
state and schedule), so a slice trained alone ends with the adapters the whole batch would have.
The caller (a job, local or itself on Ray) gets the merged result and goes on as after one
``train_many``: it saves the adapters and evaluates. Shard events reach the caller's reporter as
they happen; a stop asked there stops every shard.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shpers_core.distributed.channel import RemoteReporter, new_channel
from shpers_core.distributed.connection import connect
from shpers_core.distributed.models import load_on_worker, model_ref, worker_dtype, worker_precision
from shpers_core.events import Event, JobCancelled, Step, Validation
from shpers_core.third_party import hide_third_party_deprecations
from shpers_core.threads import computing
from shpers_core.training.multi import MultiFitResult, train_many

log = logging.getLogger(__name__)

def split(ids: list[str], k: int) -> list[list[str]]:
    """``ids`` in ``k`` contiguous slices as even as can be (none empty)."""
    k = max(1, min(k, len(ids)))
    size, extra = divmod(len(ids), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(ids[start:end])
        start = end
    return out


def train_shard(shard: int, model, device: str | None, dtype: str | None, pad_id: int,
                train_by: dict, val_by: dict, lora, train, micro_batch_rows: int | None, channel) -> dict:
    """The Ray task of one shard: load the base model (once per worker), train, return the adapters."""
    hide_third_party_deprecations()
    reporter = RemoteReporter(channel)
    try:
        base = load_on_worker(model, device, dtype, reporter.log)
        if shard == 0:
            reporter.log(worker_precision(base, dtype))
        with computing():
            result = train_many(base.model, pad_id, train_by, lora, train, reporter, val_by_adapter=val_by,
                                micro_batch_rows=micro_batch_rows)
        return {"state_dicts": {pid: {k: v.detach().cpu() for k, v in sd.items()}
                                for pid, sd in result.state_dicts.items()},
                "val_losses": result.val_losses, "train_losses": result.train_losses, "steps": result.steps,
                "trainable_params": result.trainable_params, "tokens": result.tokens, "padded": result.padded,
                "seconds": result.seconds, "global_steps": result.global_steps}
    finally:
        reporter.close()


def _per_shard(event: Event, shard: int) -> Event:
    # The run-wide mean curves ("train", "val") of each shard stay apart; per-persona ones are unique.
    if isinstance(event, (Step, Validation)) and event.series in ("train", "val"):
        return replace(event, series=f"shard{shard + 1}/{event.series}")
    return event


def train_sharded(ctx, ids: list[str], shards: int, micro_batch_rows: int | None = None):
    """Train the adapters of ``ids`` in ``shards`` Ray tasks; a :class:`MultiFitResult` of them all."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    if not ray.is_initialized():
        connect(None)  # a local instance, keeping this process's SIGTERM handler
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    task = ray.remote(train_shard).options(num_cpus=1, num_gpus=gpus, max_retries=0)
    slices = split(ids, shards)
    channels = [new_channel() for _ in slices]
    ctx.reporter.log(f"training {len(ids)} adapters in {len(slices)} shards on Ray "
                     f"({', '.join(str(len(s)) for s in slices)} personas)")
    model = model_ref(ctx.spec.base_model)
    dtype = worker_dtype(ctx.spec.dtype, ctx.base.dtype, gpus > 0 and (ctx.spec.device or "cuda").startswith("cuda"))
    refs = [task.remote(i, model, ctx.spec.device, dtype, ctx.pad_id,
                        {pid: ctx.examples(pid, "train") for pid in part},
                        {pid: ctx.examples(pid, "val") for pid in part}, ctx.lora, ctx.train, micro_batch_rows, ch)
            for i, (part, ch) in enumerate(zip(slices, channels))]
    stop_sent = False
    try:
        pending = list(refs)
        while True:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.25)
            for i, ch in enumerate(channels):
                for kind, payload in ray.get(ch.take.remote(), timeout=120):
                    if kind == "event":
                        ctx.reporter.emit(_per_shard(payload, i))
            if not stop_sent and ctx.reporter.should_stop():
                for ch in channels:
                    ch.request_stop.remote()
                stop_sent = True
            if not pending:
                break
        try:
            parts = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, JobCancelled) or stop_sent:
                raise JobCancelled() from None
            raise
    finally:
        for ch in channels:
            ray.kill(ch)
    merged = MultiFitResult(state_dicts={})
    for part in parts:
        merged.state_dicts.update(part["state_dicts"])
        merged.val_losses.update(part["val_losses"])
        merged.train_losses.update(part["train_losses"])
        merged.steps.update(part["steps"])
        merged.trainable_params += part["trainable_params"]
        merged.tokens += part["tokens"]
        merged.padded += part["padded"]
        merged.seconds += part["seconds"]
        merged.global_steps = max(merged.global_steps, part["global_steps"])
    return merged

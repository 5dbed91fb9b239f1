"""Per-persona LoRA (study 4.2): one adapter per persona on its own training dialogues.

By default all adapters train together in one batched pass over the frozen base model; the
one-at-a-time path stays for checking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shpers_core.distributed.shards import train_sharded
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec
from shpers_core.params import Params, param


@dataclass
class PerPersonaParams(Params):
    title = "Per-persona LoRA"
    engine: str = param("batched", "batched: all adapters in one pass; sequential: one after another.",
                        choices=("batched", "sequential"))
    micro_batch_rows: int = param(0, "Rows per forward pass in the batched engine (0: automatic).", min=0)
    shards: int = param(1, "Split the personas into this many shards, each trained by its own Ray worker with "
                           "the batched engine (1: all in this process). Shards keep no checkpoints.", min=1,
                        max=4096)


def run(ctx, params: PerPersonaParams) -> EvalPlan:
    adapters = {}
    val_losses = {}
    todo = []
    for pid in ctx.personas:
        saved = ctx.saved_adapter(pid)
        if saved is not None:
            adapters[pid] = saved
        else:
            todo.append(pid)
    if todo and params.engine == "sequential":
        for pid in todo:
            result = ctx.fit_lora(ctx.examples(pid, "train"), ctx.examples(pid, "val"), name=pid,
                                  series=f"{pid}/train")
            adapters[pid] = ctx.save_lora(pid, result.state_dict, persona_id=pid)
            if result.val_curve:
                val_losses[pid] = result.val_curve[-1][1]
            ctx.reporter.progress("personas", len(adapters), len(ctx.personas))
    elif todo:
        batch = ctx.batch_to_train(list(ctx.personas), todo)
        if params.shards > 1 and len(batch) > 1:
            result = train_sharded(ctx, batch, params.shards, params.micro_batch_rows or None)
            ctx.note_training(result)
        else:
            result = ctx.fit_lora_batched({pid: ctx.examples(pid, "train") for pid in batch},
                                          {pid: ctx.examples(pid, "val") for pid in batch},
                                          params.micro_batch_rows or None)
        for pid in batch:
            if pid in todo:
                adapters[pid] = ctx.save_lora(pid, result.state_dicts[pid], persona_id=pid)
            if result.val_losses.get(pid):
                val_losses[pid] = result.val_losses[pid][-1][1]
    if val_losses:
        ctx.store.add_persona_scores(ctx.run_id, [(pid, "val_loss", "validation", v) for pid, v in val_losses.items()])
        ctx.store.add_persona_scores(
            ctx.run_id, [(pid, "val_score", "validation", math.exp(-v)) for pid, v in val_losses.items()])
    return EvalPlan(adapters=adapters)


METHOD = MethodSpec(
    name="per_persona_lora",
    title="Per-persona LoRA",
    summary="One LoRA adapter per persona on its own 20 training dialogues.",
    params=PerPersonaParams,
    run=run,
)

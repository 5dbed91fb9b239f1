"""Unified LoRA (study 4.1): one adapter on every selected persona's training dialogues."""

from __future__ import annotations

from dataclasses import dataclass

from shpers_core.distributed.data_parallel import fit_data_parallel
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec
from shpers_core.params import Params, param


@dataclass
class UnifiedParams(Params):
    title = "Unified LoRA"
    workers: int = param(1, "Train data-parallel on this many Ray Train workers (1: in this process). Each takes "
                            "its share of every batch (train.batch_size stays the global batch); the gradients "
                            "are summed, so the adapter equals the one-process run's.", min=1, max=1024)


def run(ctx, params: UnifiedParams) -> EvalPlan:
    train = ctx.pooled_examples(ctx.personas, "train")
    val = ctx.pooled_examples(ctx.personas, "val")
    adapter = ctx.saved_adapter("unified")
    if adapter is None:
        if params.workers > 1:
            result = fit_data_parallel(ctx, train, val, "unified", params.workers)
        else:
            result = ctx.fit_lora(train, val, name="unified")
        adapter = ctx.save_lora("unified", result.state_dict)
    return EvalPlan(adapters={pid: adapter for pid in ctx.personas})


METHOD = MethodSpec(
    name="unified_lora",
    title="Unified LoRA",
    summary="One LoRA adapter trained on all selected personas' dialogues (the study's baseline).",
    params=UnifiedParams,
    run=run,
)

"""Unified LoRA (study 4.1): one adapter on every selected persona's training dialogues."""

from __future__ import annotations

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec, NoParams


def run(ctx, params: NoParams) -> EvalPlan:
    train = ctx.pooled_examples(ctx.personas, "train")
    val = ctx.pooled_examples(ctx.personas, "val")
    adapter = ctx.saved_adapter("unified")
    if adapter is None:
        result = ctx.fit_lora(train, val, name="unified")
        adapter = ctx.save_lora("unified", result.state_dict)
    return EvalPlan(adapters={pid: adapter for pid in ctx.personas})


METHOD = MethodSpec(
    name="unified_lora",
    title="Unified LoRA",
    summary="One LoRA adapter trained on all selected personas' dialogues (the study's baseline).",
    params=NoParams,
    run=run,
)

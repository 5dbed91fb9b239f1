"""The base model alone: the floor every method should clear."""

from __future__ import annotations

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec, NoParams


def run(ctx, params: NoParams) -> EvalPlan:
    return EvalPlan(adapters={pid: None for pid in ctx.personas})


METHOD = MethodSpec(
    name="base_model",
    title="Base model (no adaptation)",
    summary="The base chat model with no adapter and no persona information.",
    params=NoParams,
    run=run,
    trains=False,
    shows_lora_form=False,
)

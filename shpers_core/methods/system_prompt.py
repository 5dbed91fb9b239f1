"""Persona in the system prompt (study 8.2): the base model, no training at all."""

from __future__ import annotations

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec, NoParams
from shpers_core.methods.prompting import persona_system_prompts


def run(ctx, params: NoParams) -> EvalPlan:
    return EvalPlan(
        adapters={pid: None for pid in ctx.personas},
        system=persona_system_prompts(ctx),
    )


METHOD = MethodSpec(
    name="system_prompt",
    title="Persona in system prompt",
    summary="The base model with the persona description in its system prompt; no training.",
    params=NoParams,
    run=run,
    trains=False,
    shows_lora_form=False,
)

"""Static text prefix (study 4.6, variant 1): the unified adapter, with the persona's
description given as text in the system prompt. No training of its own."""

from __future__ import annotations

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec, NoParams
from shpers_core.methods.prompting import persona_system_prompts


def run(ctx, params: NoParams) -> EvalPlan:
    source = ctx.source_run("unified_lora")
    ctx.store.update_run(ctx.run_id, parent_run_id=source)
    unified = ctx.adapters_of(source)[None]
    return EvalPlan(
        adapters={pid: unified for pid in ctx.personas},
        system=persona_system_prompts(ctx),
    )


METHOD = MethodSpec(
    name="static_prefix",
    title="Unified + static text prefix",
    summary="The unified adapter with the persona description as text in the system prompt.",
    params=NoParams,
    run=run,
    trains=False,
    shows_lora_form=False,
    requires=("unified_lora",),
)

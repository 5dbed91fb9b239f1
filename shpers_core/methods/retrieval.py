"""Retrieval-augmented replies (study 8.2): the persona's most similar past training turns
go into the prompt as examples; no training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec
from shpers_core.params import Params, param


@dataclass
class RetrievalParams(Params):
    title = "Retrieval"
    examples: int = param(3, "Past exchanges of the persona put into the prompt.", min=1, max=20)
    on_unified: bool = param(False, "Answer with the unified LoRA adapter instead of the base model.")


def retriever(train_dialogues: dict, embed, examples: int, system_prompt: str | None):
    """A function (persona id, history) -> system prompt holding the most similar past exchanges."""
    memory: dict[str, tuple[list[tuple[str, str]], np.ndarray]] = {}
    for pid, dialogues in train_dialogues.items():
        pairs = [(history[-1].text, reply.text) for d in dialogues for history, reply in d.turns()]
        memory[pid] = (pairs, embed([u for u, _ in pairs]) if pairs else np.zeros((0, 1)))
    base_prompt = system_prompt or "You are a smart-home assistant."

    def system_for_turn(pid: str, history) -> str | None:
        pairs, vectors = memory[pid]
        if not pairs or not history:
            return None
        query = embed([history[-1].text])[0]
        best = np.argsort(-(vectors @ query))[:examples]
        shown = "\n".join(f"User: {pairs[i][0]}\nAssistant: {pairs[i][1]}" for i in sorted(best))
        return f"{base_prompt}\nThis user's earlier requests and the right replies:\n{shown}"

    return system_for_turn


def run(ctx, params: RetrievalParams) -> EvalPlan:
    system_for_turn = retriever({pid: ctx.dialogues(pid, "train") for pid in ctx.personas}, ctx.embed,
                                params.examples, ctx.system_prompt)
    adapters = {pid: None for pid in ctx.personas}
    if params.on_unified:
        source = ctx.source_run("unified_lora")
        ctx.store.update_run(ctx.run_id, parent_run_id=source)
        unified = ctx.adapters_of(source)[None]
        adapters = {pid: unified for pid in ctx.personas}
    return EvalPlan(adapters=adapters, system_for_turn=system_for_turn, retrieval_examples=params.examples)


METHOD = MethodSpec(
    name="retrieval",
    title="Retrieval of past turns",
    summary="Put the persona's most similar earlier exchanges into the prompt; no training.",
    params=RetrievalParams,
    run=run,
    trains=False,
    shows_lora_form=False,
    requires=("unified_lora",),
    requires_when=lambda params: params.on_unified,
)

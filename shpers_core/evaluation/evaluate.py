"""Score a method's plan on every selected persona's test dialogues, turn by turn.

Each assistant turn is answered given the real history before it. All personas' turns go
through one batched generator in which every row carries its own adapter, then the four
metrics are computed per turn, averaged per persona (all turns, persona-dependent turns, the
rest) and across personas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from shpers_core.methods.base import Adapter, EvalPlan
from shpers_core.training.config import LoraParams

SUBSETS = ("all", "persona_dependent", "other")


@dataclass
class TurnResult:
    persona_id: str
    dialogue_id: str
    turn: int
    history: list[dict]
    prediction: str
    reference: str
    persona_dependent: bool | None
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    turns: list[TurnResult]
    persona_scores: dict[str, dict[str, dict[str, float]]]
    """subset -> metric -> persona id -> mean over that persona's turns."""
    metrics: dict[str, dict[str, float]]
    """subset -> metric -> mean over personas (and ``<metric>_std``)."""


def _stack_factors(adapters: list[Adapter]) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Fold each adapter's scale into B and pad to a common rank, so one stack holds them all.

    Padding A with zero rows and B with zero columns leaves B·A unchanged.
    """
    max_rank = max(t.shape[0] for a in adapters for k, t in a.state_dict.items() if ".lora_A." in k)
    out = []
    for a in adapters:
        sd = {}
        for key, t in a.state_dict.items():
            t = t.float()
            if ".lora_A." in key:
                t = torch.nn.functional.pad(t, (0, 0, 0, max_rank - t.shape[0]))
            elif ".lora_B." in key:
                t = torch.nn.functional.pad(t * a.scaling, (0, max_rank - t.shape[1]))
            sd[key] = t
        out.append(sd)
    return out, max_rank


def _targets(adapters: list[Adapter]) -> list[str]:
    names = {k.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for a in adapters for k in a.state_dict}
    return sorted(names)


def _prompt_for(base, plan: EvalPlan, persona_id: str, history: list, system_prompt: str | None) -> list[int]:
    """The token ids that ask ``persona_id``'s next reply to ``history`` under ``plan``."""
    from shpers_core.models import encode_prompt

    system = plan.system.get(persona_id, system_prompt)
    if plan.system_for_turn is not None:
        system = plan.system_for_turn(persona_id, history) or system
    return encode_prompt(base.tokenizer, history, system=system)


def _install(base, adapters: list[Adapter]):
    """``adapters`` stacked into ``base.model`` (slot i holds adapter i), or None without any."""
    from shpers_core.training.multi_lora import MultiLoraModel

    if not adapters:
        return None
    factors, rank = _stack_factors(adapters)
    multi = MultiLoraModel(base.model, len(adapters), LoraParams(rank=rank, lora_alpha=float(rank), lora_dropout=0.0,
                                                                 target_modules=_targets(adapters)))
    for slot, sd in enumerate(factors):
        multi.load_adapter(slot, sd)
    return multi


def generate_for_plan(base, plan: EvalPlan, requests: list[tuple[str, list]], system_prompt: str | None,
                      max_new_tokens: int, batch_size: int, reporter=None) -> list[str]:
    """Replies for ``(persona_id, history)`` requests under ``plan``."""
    from shpers_core.evaluation.generation import generate_replies
    from shpers_core.models import decode_reply

    prompts, slots, prefixes, kv_prefixes = [], [], [], []
    unique: list[Adapter] = []
    slot_of: dict[int, int] = {}
    for pid, history in requests:
        prompts.append(_prompt_for(base, plan, pid, history, system_prompt))
        adapter = plan.adapters.get(pid)
        if adapter is None:
            slots.append(-1)
        else:
            if id(adapter) not in slot_of:
                slot_of[id(adapter)] = len(unique)
                unique.append(adapter)
            slots.append(slot_of[id(adapter)])
        prefixes.append(plan.soft_prompts.get(pid))
        kv_prefixes.append(plan.kv_prefixes.get(pid))
    multi = _install(base, unique)
    try:
        model = multi.model if multi is not None else base.model
        outputs = generate_replies(model, base.tokenizer, prompts, slots=slots if multi else None, multi=multi,
                                   max_new_tokens=max_new_tokens, batch_size=batch_size, reporter=reporter,
                                   prefix_embeds=prefixes if any(p is not None for p in prefixes) else None,
                                   kv_prefixes=kv_prefixes if any(p is not None for p in kv_prefixes) else None)
    finally:
        if multi is not None:
            multi.remove()
    return [decode_reply(base.tokenizer, out) for out in outputs]


def evaluate_plan(ctx, plan: EvalPlan) -> EvalResult:
    """Generate and score every test turn of the context's personas."""
    from shpers_core.evaluation.embedding import EmbeddingScorer
    from shpers_core.evaluation.metrics import score_reply

    items: list[TurnResult] = []
    requests = []
    for pid in ctx.personas:
        for dialogue in ctx.dialogues(pid, "test"):
            for i, (history, reference) in enumerate(dialogue.turns()):
                items.append(TurnResult(pid, dialogue.dialogue_id, i, [m.to_dict() for m in history], "",
                                        reference.text, reference.persona_dependent))
                requests.append((pid, history))
    ctx.reporter.log(f"evaluating {len(items)} turns of {len(ctx.personas)} personas")
    replies = generate_for_plan(ctx.base, plan, requests, ctx.system_prompt, ctx.eval.max_new_tokens,
                                ctx.eval.eval_batch_size, ctx.reporter)
    sims = EmbeddingScorer().similarity(replies, [t.reference for t in items])
    for item, reply, sim in zip(items, replies, sims):
        item.prediction = reply
        item.scores = {"embedding_similarity": float(sim), **score_reply(reply, item.reference)}
    return aggregate(items, ctx.personas)


def aggregate(items: list[TurnResult], personas: list[str]) -> EvalResult:
    metric_names = list(items[0].scores) if items else []
    persona_scores: dict[str, dict[str, dict[str, float]]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for subset in SUBSETS:
        chosen = [t for t in items if subset == "all" or (t.persona_dependent is True) == (subset == "persona_dependent")]
        per_metric: dict[str, dict[str, float]] = {}
        for metric in metric_names:
            by_persona = {}
            for pid in personas:
                values = [t.scores[metric] for t in chosen if t.persona_id == pid]
                if values:
                    by_persona[pid] = float(np.mean(values))
            per_metric[metric] = by_persona
        persona_scores[subset] = per_metric
        summary = {}
        for metric, by_persona in per_metric.items():
            if by_persona:
                values = np.array(list(by_persona.values()))
                summary[metric] = float(values.mean())
                summary[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                summary[f"{metric}_min"] = float(values.min())
                summary[f"{metric}_max"] = float(values.max())
        metrics[subset] = summary
    return EvalResult(items, persona_scores, metrics)


def stream_for_plan(base, plan: EvalPlan, persona_id: str, history: list, system_prompt: str | None,
                    max_new_tokens: int):
    """The reply to one persona's ``history`` under ``plan``, yielded in pieces as generated."""
    from shpers_core.evaluation.generation import generate_stream

    prompt = _prompt_for(base, plan, persona_id, history, system_prompt)
    adapter = plan.adapters.get(persona_id)
    multi = _install(base, [adapter] if adapter is not None else [])
    soft = plan.soft_prompts.get(persona_id)
    try:
        model = multi.model if multi is not None else base.model
        yield from generate_stream(model, base.tokenizer, prompt, slot=0 if multi else -1, multi=multi,
                                   max_new_tokens=max_new_tokens, prefix_embeds=soft,
                                   kv_prefix=plan.kv_prefixes.get(persona_id))
    finally:
        if multi is not None:
            multi.remove()

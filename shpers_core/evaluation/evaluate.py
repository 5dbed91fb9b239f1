"""Score a method's plan on every selected persona's test dialogues, turn by turn.

Each assistant turn is answered given the real history before it. All personas' turns go
through one batched generator in which every row carries its own adapter, then the four
metrics are computed per turn, averaged per persona (all turns, persona-dependent turns, the
rest) and across personas.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from shpers_core.evaluation import dialogues as dialogues_module
from shpers_core.evaluation import generation
from shpers_core.evaluation.embedding import EmbeddingScorer
from shpers_core.evaluation.metrics import score_reply
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.models import decode_reply, encode_prompt_within
from shpers_core.training.adapter_types import Adapter
from shpers_core.training.config import LoraParams
from shpers_core.training.multi import MultiLoraModel

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
    turns_per_second: float = 0.0
    """Generation speed: test turns answered per second (scoring excluded)."""
    truncated_turns: int = 0
    """Turns whose prompt was cut to fit the model's context."""


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


def context_length(model) -> int | None:
    """The longest sequence ``model`` takes (its position embeddings), if its config says."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


def _prompt_for(base, plan: EvalPlan, persona_id: str, history: list, system_prompt: str | None,
                max_new_tokens: int = 0) -> tuple[list[int], bool]:
    """The token ids that ask ``persona_id``'s next reply to ``history`` under ``plan``, cut (oldest turns
    first) so that they, the persona's soft prompt or KV prefix and the reply fit the model's context;
    and whether anything was cut."""
    system = plan.system.get(persona_id, system_prompt)
    if plan.system_for_turn is not None:
        system = plan.system_for_turn(persona_id, history) or system
    limit = context_length(base.model)
    if limit is None:
        limit = 1 << 30
    soft, kv = plan.soft_prompts.get(persona_id), plan.kv_prefixes.get(persona_id)
    used = (0 if soft is None else int(soft.shape[0])) + (0 if kv is None else int(kv.shape[3]))
    return encode_prompt_within(base.tokenizer, history, system, limit - used - max_new_tokens)


class AdapterSlots:
    """The distinct adapters of a batch in order of first use, and each row's slot in them."""

    def __init__(self) -> None:
        self.adapters: list[Adapter] = []
        self._slot_of: dict[int, int] = {}

    def slot(self, adapter: Adapter | None) -> int:
        """The slot that holds ``adapter`` (added on first use); -1 for a row without one."""
        if adapter is None:
            return -1
        if id(adapter) not in self._slot_of:
            self._slot_of[id(adapter)] = len(self.adapters)
            self.adapters.append(adapter)
        return self._slot_of[id(adapter)]


def _install(base, adapters: list[Adapter]):
    """``adapters`` stacked into ``base.model`` (slot i holds adapter i), or None without any."""
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
    replies, _ = generate_dialogues_for_plan(base, plan, [(pid, [history]) for pid, history in requests],
                                             system_prompt, max_new_tokens, batch_size, reporter)
    return [r[0] for r in replies]


def generate_dialogues_for_plan(base, plan: EvalPlan, dialogues: list[tuple[str, list[list]]],
                                system_prompt: str | None, max_new_tokens: int, batch_size: int, reporter=None,
                                *, reuse_cache: bool = True) -> tuple[list[list[str]], int]:
    """Replies to every turn of ``(persona_id, [history of turn 0, of turn 1, ...])`` dialogues under
    ``plan``, and how many turns' prompts were cut to fit the context.

    With ``reuse_cache`` each dialogue is prefilled once and its cache extended turn by turn
    (:func:`~shpers_core.evaluation.dialogues.generate_dialogues`); without, every turn's prompt is
    encoded whole (the same greedy replies, slower).
    """
    prompts, slots, prefixes, kv_prefixes = [], [], [], []
    truncated = 0
    stack = AdapterSlots()
    for pid, histories in dialogues:
        turns = []
        for history in histories:
            ids, cut = _prompt_for(base, plan, pid, history, system_prompt, max_new_tokens)
            turns.append(ids)
            truncated += cut
        prompts.append(turns)
        slots.append(stack.slot(plan.adapters.get(pid)))
        prefixes.append(plan.soft_prompts.get(pid))
        kv_prefixes.append(plan.kv_prefixes.get(pid))
    multi = _install(base, stack.adapters)
    options = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, reporter=reporter)
    try:
        model = multi.model if multi is not None else base.model
        if reuse_cache and any(len(turns) > 1 for turns in prompts):  # one-turn requests have nothing to reuse
            outputs = dialogues_module.generate_dialogues(
                model, base.tokenizer, prompts, slots=slots if multi else None, multi=multi,
                prefix_embeds=prefixes if any(p is not None for p in prefixes) else None,
                kv_prefixes=kv_prefixes if any(p is not None for p in kv_prefixes) else None, **options)
        else:
            rows = [(i, k) for i, turns in enumerate(prompts) for k in range(len(turns))]
            flat = generation.generate_replies(
                model, base.tokenizer, [prompts[i][k] for i, k in rows],
                slots=[slots[i] for i, _ in rows] if multi else None, multi=multi,
                prefix_embeds=[prefixes[i] for i, _ in rows] if any(p is not None for p in prefixes) else None,
                kv_prefixes=[kv_prefixes[i] for i, _ in rows] if any(p is not None for p in kv_prefixes) else None,
                **options)
            outputs = [[[] for _ in turns] for turns in prompts]
            for (i, k), out in zip(rows, flat):
                outputs[i][k] = out
    finally:
        if multi is not None:
            multi.remove()
    return [[decode_reply(base.tokenizer, out) for out in turns] for turns in outputs], truncated


def test_requests(ctx) -> tuple[list[TurnResult], list[tuple[str, list[list]]]]:
    """Every test turn of the context's personas as an empty result, and the same turns grouped by dialogue."""
    items: list[TurnResult] = []
    dialogues = []
    for pid in ctx.personas:
        for dialogue in ctx.dialogues(pid, "test"):
            histories = []
            for i, (history, reference) in enumerate(dialogue.turns()):
                items.append(TurnResult(pid, dialogue.dialogue_id, i, [m.to_dict() for m in history], "",
                                        reference.text, reference.persona_dependent))
                histories.append(history)
            dialogues.append((pid, histories))
    return items, dialogues


def embedding_skipped() -> bool:
    """Whether ``SHPERS_SKIP_EMBEDDING`` is set: ``make gpu-check`` on a machine without the MiniLM package."""
    return os.environ.get("SHPERS_SKIP_EMBEDDING", "") not in ("", "0")


def evaluate_plan(ctx, plan: EvalPlan, *, reuse_cache: bool = True) -> EvalResult:
    """Generate and score every test turn of the context's personas."""
    items, dialogues = test_requests(ctx)
    ctx.reporter.log(f"evaluating {len(items)} turns of {len(ctx.personas)} personas")
    started = time.perf_counter()
    nested, truncated = generate_dialogues_for_plan(ctx.base, plan, dialogues, ctx.system_prompt,
                                                    ctx.eval.max_new_tokens, ctx.eval.eval_batch_size, ctx.reporter,
                                                    reuse_cache=reuse_cache)
    seconds = time.perf_counter() - started
    if truncated:
        ctx.reporter.log(f"{truncated} of {len(items)} turns had their history cut to fit the model's context",
                         "warning")
    replies = [reply for turns in nested for reply in turns]
    if embedding_skipped():
        ctx.reporter.log("the embedding-similarity metric is skipped (SHPERS_SKIP_EMBEDDING)", "warning")
        sims = [None] * len(items)
    else:
        sims = EmbeddingScorer().similarity(replies, [t.reference for t in items])
    for item, reply, sim in zip(items, replies, sims):
        item.prediction = reply
        item.scores = ({} if sim is None else {"embedding_similarity": float(sim)}) | score_reply(reply, item.reference)
    result = aggregate(items, ctx.personas)
    result.turns_per_second = len(items) / seconds if seconds > 0 else 0.0
    result.truncated_turns = truncated
    return result


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
    prompt, _ = _prompt_for(base, plan, persona_id, history, system_prompt, max_new_tokens)
    adapter = plan.adapters.get(persona_id)
    multi = _install(base, [adapter] if adapter is not None else [])
    soft = plan.soft_prompts.get(persona_id)
    try:
        model = multi.model if multi is not None else base.model
        yield from generation.generate_stream(model, base.tokenizer, prompt, slot=0 if multi else -1, multi=multi,
                                   max_new_tokens=max_new_tokens, prefix_embeds=soft,
                                   kv_prefix=plan.kv_prefixes.get(persona_id))
    finally:
        if multi is not None:
            multi.remove()

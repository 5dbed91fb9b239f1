"""Several chat replies generated together, streamed piece by piece: one mixed-adapter batch.

Chat's side-by-side panes ask two runs (two plans, possibly different adapters, prompts or
prefixes) for a reply to the same conversation. Their rows go through one batch in which each row
carries its own adapter, so both replies grow at once for the cost of about one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from shpers_core.evaluation.evaluate import AdapterSlots, _install, _prompt_for
from shpers_core.evaluation.generation import (
    greedy_tokens,
    left_padded,
    model_device,
    pad_id_for,
    stop_token_ids,
)


@dataclass(frozen=True)
class Piece:
    """Text for row ``row``; the row's last piece has ``done`` set, and ``truncated`` when the reply
    reached the token limit instead of ending by itself."""

    row: int
    text: str
    done: bool = False
    truncated: bool = False


def stream_rows(base, rows: list[tuple], max_new_tokens: int) -> Iterator[Piece]:
    """Greedy replies for ``rows`` of ``(plan, persona_id, history, system_prompt)`` in one batch."""
    prompts, slots, softs, kvs = [], [], [], []
    stack = AdapterSlots()
    for plan, pid, history, system in rows:
        # Cut (oldest turns first) to fit the model's context with the reply, as evaluation does.
        prompts.append(_prompt_for(base, plan, pid, history, system, max_new_tokens)[0])
        slots.append(stack.slot(plan.adapters.get(pid)))
        softs.append(plan.soft_prompts.get(pid))
        kvs.append(plan.kv_prefixes.get(pid))
    tokenizer = base.tokenizer
    multi = _install(base, stack.adapters)
    model = multi.model if multi is not None else base.model
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_id_for(tokenizer, stops)
    was_training = model.training
    model.eval()
    n = len(rows)
    ids: list[list[int]] = [[] for _ in range(n)]
    sent = [""] * n
    done = [False] * n
    try:
        inputs = left_padded(model, prompts, softs, pad_id, model_device(model), kvs)
        for nxt in greedy_tokens(model, inputs, slots if multi is not None else None, multi, max_new_tokens, stops, pad_id):
            for row, token in enumerate(torch.as_tensor(nxt).tolist()):
                if done[row]:
                    continue
                if token in stops:
                    done[row] = True
                    yield from _rest(tokenizer, ids[row], sent, row, truncated=False)
                    continue
                ids[row].append(token)
                text = tokenizer.decode(ids[row], skip_special_tokens=True)
                # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives.
                if text.endswith("\ufffd") or not text.startswith(sent[row]) or len(text) <= len(sent[row]):
                    continue
                yield Piece(row, text[len(sent[row]):])
                sent[row] = text
        for row in range(n):
            if not done[row]:
                yield from _rest(tokenizer, ids[row], sent, row, truncated=len(ids[row]) >= max_new_tokens)
    finally:
        model.train(was_training)
        if multi is not None:
            multi.remove()


def _rest(tokenizer, ids: list[int], sent: list[str], row: int, truncated: bool) -> Iterator[Piece]:
    text = tokenizer.decode(ids, skip_special_tokens=True)
    tail = text[len(sent[row]):] if text.startswith(sent[row]) else ""
    sent[row] = text
    yield Piece(row, tail, done=True, truncated=truncated)

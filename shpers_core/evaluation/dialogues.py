"""Greedy replies to every turn of many dialogues, each dialogue's KV cache kept from turn to turn.

Turn k+1's prompt usually extends turn k's (the reference reply plus the next user message), so
after a turn only its new tokens are computed; the replies equal :func:`generate_replies` on each
turn's whole prompt (a test holds them to it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from shpers_core.evaluation.generation import (
    CACHE_ARG,
    check_slots,
    greedy_tokens,
    left_padded,
    model_device,
    pad_id_for,
    stop_token_ids,
)
from shpers_core.evaluation.kv_cache import roomy_cache
from shpers_core.events import Reporter
from shpers_core.training.multi import MultiLoraModel


def _compacted(model: torch.nn.Module, prompt: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor,
               keep_rows: torch.Tensor, width: int) -> tuple[DynamicCache, torch.Tensor]:
    """The first ``width`` columns of each layer's ``prompt`` keys and values, for ``keep_rows``, each row's real columns moved to the right
    end in order (so columns hidden by the mask take no room); the new cache and its mask.

    Keys carry their rotary position already, so moving a column changes nothing it computes.
    """
    mask = mask[keep_rows, :width]
    counts = mask.sum(dim=1)
    new_width = int(counts.max()) if counts.numel() else 0
    order = torch.argsort(mask, dim=1, stable=True)  # masked columns first, real ones in their order
    index = order[:, width - new_width:]
    new_mask = (torch.arange(new_width, device=mask.device)[None, :] >= (new_width - counts)[:, None]).long()
    layers = []
    for keys, values in prompt:
        keys, values = keys[keep_rows], values[keep_rows]
        idx = index[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[3])
        layers.append((keys.gather(2, idx), values.gather(2, idx)))
    return roomy_cache(model, layers), new_mask


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def generate_dialogues(
    model: torch.nn.Module,
    tokenizer,
    dialogues: list[list[list[int]]],
    *,
    slots: list[int] | None = None,
    multi: MultiLoraModel | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    reporter: Reporter | None = None,
    prefix_embeds: list[torch.Tensor | None] | None = None,
    kv_prefixes: list[torch.Tensor | None] | None = None,
) -> list[list[list[int]]]:
    """Greedy replies to every turn of every dialogue; ``dialogues[i][k]`` is the prompt of turn ``k``.

    The same replies as :func:`generate_replies` on each turn's prompt, with each dialogue's cache
    kept from turn to turn: turn k+1's prompt usually extends turn k's (reference reply plus the next
    user message), so only the new tokens are computed. Where a prompt does not extend the last one
    (a retrieved system prompt that changed, a history cut to fit the context), the row's cache is
    kept up to the tokens both share and the rest recomputed. Rows (dialogue ``i`` with adapter
    ``slots[i]``, soft prompt and KV prefix as in :func:`generate_replies`) are batched across personas.
    """
    n = len(dialogues)
    check_slots(slots, multi, n)
    prefixes = list(prefix_embeds) if prefix_embeds is not None else [None] * n
    kvs = list(kv_prefixes) if kv_prefixes is not None else [None] * n
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_id_for(tokenizer, stops)
    device = model_device(model)
    # Dialogues with as many turns and similar lengths share a batch, so rows rarely leave it early.
    order = sorted((i for i in range(n) if dialogues[i]),
                   key=lambda i: (-len(dialogues[i]), -len(dialogues[i][-1])))
    replies: list[list[list[int]]] = [[[] for _ in d] for d in dialogues]
    total_turns, done_turns = sum(len(d) for d in dialogues), 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            if reporter is not None:
                reporter.check()
            rows = order[start:start + batch_size]
            done_turns += _dialogue_batch(model, [dialogues[i] for i in rows], [prefixes[i] for i in rows],
                                          [kvs[i] for i in rows], [slots[i] for i in rows] if slots else None,
                                          multi, max_new_tokens, stops, pad_id, device,
                                          [replies[i] for i in rows], reporter)
            if reporter is not None:
                reporter.progress("generate", done_turns, total_turns)
    finally:
        model.train(was_training)
    return replies


def _cut(seq: list[int], stops: set[int]) -> list[int]:
    cut = next((j for j, t in enumerate(seq) if t in stops), len(seq))
    return seq[:cut]


def _dialogue_batch(model, turns, prefixes, kvs, slots, multi, max_new_tokens, stops, pad_id, device,
                    out: list[list[list[int]]], reporter) -> int:
    """Generate every turn of one batch of dialogues into ``out``; returns the number of turns."""
    # Logical tokens before each row's prompt: its KV prefix and its soft prompt.
    base = [(0 if kv is None else int(kv.shape[3])) + (0 if p is None else int(p.shape[0])) for kv, p in zip(kvs, prefixes)]
    live = list(range(len(turns)))  # batch rows still in the cache, in cache row order
    held: list[list[int]] = [turns[r][0] for r in live]
    inputs = left_padded(model, held, prefixes, pad_id, device, kvs)
    count = 0
    k = 0
    while True:
        final: dict = {}
        row_slots = [slots[r] for r in live] if slots is not None else None
        steps = [t.cpu() for t in greedy_tokens(model, inputs, row_slots, multi, max_new_tokens, stops, pad_id, final)]
        tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in live]
        for r, seq in zip(live, tokens):
            out[r][k] = _cut(seq, stops)
        count += len(live)
        if reporter is not None:
            reporter.check()
        k += 1
        keep = [j for j, r in enumerate(live) if k < len(turns[r])]
        if not keep:
            return count
        # Drop what was generated (the next prompt has the reference reply instead) and finished rows.
        width = inputs["attention_mask"].shape[1]
        cache, mask = _compacted(model, final["prompt"], inputs["attention_mask"],
                                 torch.tensor(keep, device=device), width)
        live = [live[j] for j in keep]
        held = [held[j] for j in keep]
        news, positions = [], []
        for j, r in enumerate(live):
            prompt = turns[r][k]
            # At least the last token is fed again: its logits start the reply.
            c = min(_common_prefix(held[j], prompt), len(prompt) - 1)
            drop = len(held[j]) - c
            if drop:  # the row's cached tokens past the shared part (the right end) leave its prompt
                mask[j, mask.shape[1] - drop:] = 0
            news.append(prompt[c:])
            positions.append(base[r] + c)
            held[j] = list(prompt)
        block = max(len(x) for x in news)
        ids = torch.full((len(live), block), pad_id, dtype=torch.long)
        block_mask = torch.zeros((len(live), block), dtype=torch.long)
        pos = torch.zeros((len(live), block), dtype=torch.long)
        for j, (new, p0) in enumerate(zip(news, positions)):
            ids[j, block - len(new):] = torch.tensor(new, dtype=torch.long)
            block_mask[j, block - len(new):] = 1
            pos[j, block - len(new):] = torch.arange(p0, p0 + len(new))
        inputs = {"input_ids": ids.to(device), "attention_mask": torch.cat([mask, block_mask.to(device)], dim=1),
                  "position_ids": pos.to(device), CACHE_ARG: cache}

"""Greedy replies to every turn of many dialogues, each dialogue prefilled once.

Turn k+1's prompt usually extends turn k's (the reference reply plus the next user message), so
every turn's prompt is a start of the dialogue's last one: that one is prefilled, and each turn
decodes from a copy of its cache cut to the turn's own prompt, all turns side by side. The replies
equal :func:`generate_replies` on each turn's whole prompt (a test holds them to it).
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
    prefill,
    stop_token_ids,
)
from shpers_core.evaluation.kv_cache import gathered_rooms
from shpers_core.events import Reporter
from shpers_core.training.multi import MultiLoraModel


def _compacted(model: torch.nn.Module, prompt: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor,
               rows: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
    """A cache of each layer's ``prompt`` keys and values for batch rows ``rows`` (repeats allowed),
    keeping only the columns ``mask`` (one row per entry of ``rows``) shows, moved to the right end in
    order, so hidden columns take no room; the new cache and its mask.

    Keys carry their rotary position already, so moving a column changes nothing it computes.
    """
    width = mask.shape[1]
    counts = mask.sum(dim=1)
    new_width = int(counts.max()) if counts.numel() else 0
    order = torch.argsort(mask, dim=1, stable=True)  # hidden columns first, shown ones in their order
    index = order[:, width - new_width:]
    new_mask = (torch.arange(new_width, device=mask.device)[None, :] >= (new_width - counts)[:, None]).long()
    return gathered_rooms(model, prompt, rows, index), new_mask


# A dialogue joins the prefill group of longer ones while its length is at least this share of the
# group's longest, so each prefill pads a row by at most a fifth; the 16 bench dialogues (86-202
# tokens) padded to one width were a third padding.
PREFILL_GROUP_SHARE = 0.8


def length_groups(lengths: Sequence[int], share: float = PREFILL_GROUP_SHARE) -> list[list[int]]:
    """Indices of ``lengths`` in groups of similar length, longest first: a group takes the next
    longest while it is at least ``share`` of the group's first."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and lengths[i] >= share * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _prefill_in_groups(model, lasts, prefixes, kvs, slots, multi, pad_id, device,
                       lengths: Sequence[int]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each row's keys and values of its last prompt, prefilled in groups of similar length, and the mask.

    Each group is prefilled left-padded to its own longest; the groups are then put side by side,
    each row's columns at the right end of one width and the rest hidden: the layout one batch
    left-padded to its longest would have, without computing its padding.
    """
    groups = length_groups(lengths, PREFILL_GROUP_SHARE)
    if len(groups) <= 1:
        inputs = left_padded(model, lasts, prefixes, pad_id, device, kvs)
        return prefill(model, inputs, slots, multi), inputs["attention_mask"]
    parts = []
    for group in groups:
        def pick(xs, g=group):
            return [xs[i] for i in g]

        inputs = left_padded(model, pick(lasts), pick(prefixes), pad_id, device, pick(kvs))
        kv = prefill(model, inputs, pick(slots) if slots is not None else None, multi)
        parts.append((torch.tensor(group, device=device), inputs["attention_mask"], kv))
    width = max(group_mask.shape[1] for _, group_mask, _ in parts)
    mask = parts[0][1].new_zeros((len(lasts), width))
    stitched = [(keys.new_zeros((len(lasts), keys.shape[1], width, keys.shape[3])),
                 values.new_zeros((len(lasts), values.shape[1], width, values.shape[3])))
                for keys, values in parts[0][2]]
    for rows, group_mask, kv in parts:
        start = width - group_mask.shape[1]
        mask[rows, start:] = group_mask
        for (keys, values), (group_keys, group_values) in zip(stitched, kv):
            keys[rows, :, start:] = group_keys
            values[rows, :, start:] = group_values
    return stitched, mask


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

    The same replies as :func:`generate_replies` on each turn's prompt, with each dialogue prefilled
    once: turn k's prompt usually starts the dialogue's last one (the reference replies and user
    messages that follow it), so a turn computes only what its prompt does not share with the last.
    Where a prompt does not start the last one (a retrieved system prompt that changed, a history cut
    to fit the context), the turn keeps the cache up to the tokens both share and recomputes the rest. Rows (dialogue ``i`` with adapter
    ``slots[i]``, soft prompt and KV prefix as in :func:`generate_replies`) are batched across personas.
    """
    n = len(dialogues)
    check_slots(slots, multi, n)
    prefixes = list(prefix_embeds) if prefix_embeds is not None else [None] * n
    kvs = list(kv_prefixes) if kv_prefixes is not None else [None] * n
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_id_for(tokenizer, stops)
    device = model_device(model)
    # Dialogues of similar length share a batch, so their prefill pads little.
    order = sorted((i for i in range(n) if dialogues[i]), key=lambda i: -len(dialogues[i][-1]))
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
                                          [replies[i] for i in rows], reporter, batch_size)
            if reporter is not None:
                reporter.progress("generate", done_turns, total_turns)
    finally:
        model.train(was_training)
    return replies


def _cut(seq: list[int], stops: set[int]) -> list[int]:
    cut = next((j for j, t in enumerate(seq) if t in stops), len(seq))
    return seq[:cut]


def _dialogue_batch(model, turns, prefixes, kvs, slots, multi, max_new_tokens, stops, pad_id, device,
                    out: list[list[list[int]]], reporter, batch_size: int) -> int:
    """Generate every turn of one batch of dialogues into ``out``; returns the number of turns.

    Each dialogue's last prompt is prefilled once, dialogues of similar length together
    (:func:`length_groups`). Every earlier turn's prompt is a start of it (or
    shares one), so each turn begins from a copy of that cache cut to its own prompt, and the turns
    of all dialogues decode side by side, ``batch_size`` rows at a time, instead of one turn after
    another: as many decoding steps as encoding every prompt whole takes, and one prefill.
    """
    # Logical tokens before each row's prompt: its KV prefix and its soft prompt.
    base = [(0 if kv is None else int(kv.shape[3])) + (0 if p is None else int(p.shape[0])) for kv, p in zip(kvs, prefixes)]
    lasts = [t[-1] for t in turns]
    prompt_kv, prompt_mask = _prefill_in_groups(model, lasts, prefixes, kvs, slots, multi, pad_id, device,
                                                [b + len(last) for b, last in zip(base, lasts)])
    width = prompt_mask.shape[1]
    # Turns of similar length share a chunk, so its cache pads little and its rows end together.
    rows = sorted(((r, k) for r in range(len(turns)) for k in range(len(turns[r]))),
                  key=lambda rk: -len(turns[rk[0]][rk[1]]))
    count = 0
    for start in range(0, len(rows), batch_size):
        if reporter is not None:
            reporter.check()
        chunk = rows[start:start + batch_size]
        keep = torch.tensor([r for r, _ in chunk], device=device)
        row_mask = prompt_mask[keep].clone()
        news, positions = [], []
        for j, (r, k) in enumerate(chunk):
            prompt = turns[r][k]
            # At least the last token is fed again: its logits start the reply.
            c = min(_common_prefix(lasts[r], prompt), len(prompt) - 1)
            drop = len(lasts[r]) - c
            if drop:  # the last prompt's tokens past the shared part (its right end) are not this turn's
                row_mask[j, width - drop:] = 0
            news.append(prompt[c:])
            positions.append(base[r] + c)
        cache, mask = _compacted(model, prompt_kv, row_mask, keep)
        block = max(len(x) for x in news)
        ids = torch.full((len(chunk), block), pad_id, dtype=torch.long)
        block_mask = torch.zeros((len(chunk), block), dtype=torch.long)
        pos = torch.zeros((len(chunk), block), dtype=torch.long)
        for j, (new, p0) in enumerate(zip(news, positions)):
            ids[j, block - len(new):] = torch.tensor(new, dtype=torch.long)
            block_mask[j, block - len(new):] = 1
            pos[j, block - len(new):] = torch.arange(p0, p0 + len(new))
        inputs = {"input_ids": ids.to(device), "attention_mask": torch.cat([mask, block_mask.to(device)], dim=1),
                  "position_ids": pos.to(device), CACHE_ARG: cache}
        row_slots = [slots[r] for r, _ in chunk] if slots is not None else None
        steps = [t.cpu() for t in greedy_tokens(model, inputs, row_slots, multi, max_new_tokens, stops, pad_id)]
        tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in chunk]
        for (r, k), seq in zip(chunk, tokens):
            out[r][k] = _cut(seq, stops)
        count += len(chunk)
    return count

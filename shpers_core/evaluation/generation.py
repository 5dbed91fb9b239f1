"""Greedy generation in batches where every row may have its own LoRA adapter and soft prompt.

Rows are left-padded, with position ids counted from each row's first real token, so a row's
tokens do not depend on what it is batched with. The loop is written out (prefill, then one token
at a time through the KV cache) so the adapter routing and soft prompts stay in our hands and the
same code serves batches and the chat pane's token stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from shpers_core.events import Reporter
from shpers_core.training.multi_lora import NO_ADAPTER, MultiLoraModel


def stop_token_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    """EOS and end-of-turn ids of the tokenizer, plus the model's own ``generation_config`` EOS."""
    from shpers_core.models.chat import end_of_turn_ids

    ids = set(end_of_turn_ids(tokenizer))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(int(e) for e in eos)
    return ids


# transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40).
_CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _pad_id(tokenizer, stops: set[int]) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        return int(pad)
    return min(stops) if stops else 0


def _left_padded(model: torch.nn.Module, prompts: Sequence[Sequence[int]], prefixes: Sequence[torch.Tensor | None],
                 pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs for one batch: ``input_ids`` or, with soft prompts, ``inputs_embeds``; and the mask."""
    sizes = [0 if p is None else int(p.shape[0]) for p in prefixes]
    width = max(s + len(p) for s, p in zip(sizes, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, (prompt, size) in enumerate(zip(prompts, sizes)):
        if prompt:
            ids[i, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[i, width - len(prompt) - size:] = 1
    ids, mask = ids.to(device), mask.to(device)
    if not any(sizes):
        return {"input_ids": ids, "attention_mask": mask}
    embeds = model.get_input_embeddings()(ids)
    for i, (prompt, prefix) in enumerate(zip(prompts, prefixes)):
        if prefix is not None:
            start = width - len(prompt) - prefix.shape[0]
            embeds[i, start:width - len(prompt)] = prefix.to(embeds.device, embeds.dtype)
    return {"inputs_embeds": embeds, "attention_mask": mask}


def _greedy(model: torch.nn.Module, inputs: dict[str, torch.Tensor], slots: list[int] | None,
            multi: MultiLoraModel | None, max_new_tokens: int, stops: set[int], pad_id: int) -> Iterator[torch.Tensor]:
    """Yield each step's next token per row; rows that have stopped get ``pad_id``."""
    mask = inputs.pop("attention_mask")
    rows = mask.shape[0]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stop_t = torch.tensor(sorted(stops), dtype=torch.long, device=mask.device)
    finished = torch.zeros(rows, dtype=torch.bool, device=mask.device)
    cache = None
    for _ in range(max_new_tokens):
        # Routing is set per call, so a paused stream never leaves it set for someone else.
        kwargs = {**inputs, "attention_mask": mask, "position_ids": positions, _CACHE: cache,
                  "use_cache": True, "logits_to_keep": 1}
        with torch.no_grad():
            if multi is not None:
                with multi.use_slots(slots):
                    out = model(**kwargs)
            else:
                out = model(**kwargs)
        cache = getattr(out, _CACHE)
        nxt = out.logits[:, -1, :].argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        yield nxt
        finished |= torch.isin(nxt, stop_t)
        if bool(finished.all()):
            return
        inputs = {"input_ids": nxt[:, None]}
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=mask.device)], dim=1)
        positions = positions[:, -1:] + 1


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_slots(slots, multi, n: int) -> None:
    if slots is None:
        return
    if len(slots) != n:
        raise ValueError(f"{len(slots)} slots for {n} prompts")
    if multi is None and any(s != NO_ADAPTER for s in slots):
        raise ValueError("adapter slots given without a MultiLoraModel")


def generate_replies(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[list[int]],
    *,
    slots: list[int] | None = None,
    multi: MultiLoraModel | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    reporter: Reporter | None = None,
    prefix_embeds: list[torch.Tensor | None] | None = None,
) -> list[list[int]]:
    """Greedy replies (new token ids, up to and without the stop token), in the order of ``prompts``.

    Row ``i`` uses adapter ``slots[i]`` of ``multi`` (-1: the base model) and, if given, the soft
    prompt ``prefix_embeds[i]`` ([n_virtual, hidden]) before its prompt.
    """
    n = len(prompts)
    _check_slots(slots, multi, n)
    if prefix_embeds is not None and len(prefix_embeds) != n:
        raise ValueError(f"{len(prefix_embeds)} soft prompts for {n} prompts")
    prefixes = list(prefix_embeds) if prefix_embeds is not None else [None] * n
    stops = stop_token_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, stops)
    device = _device(model)
    # Longest first: similar lengths share a batch (less padding) and running out of memory shows at once.
    order = sorted(range(n), key=lambda i: -(len(prompts[i]) + (0 if prefixes[i] is None else prefixes[i].shape[0])))
    replies: list[list[int]] = [[] for _ in range(n)]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            if reporter is not None:
                reporter.check()
            rows = order[start:start + batch_size]
            inputs = _left_padded(model, [prompts[i] for i in rows], [prefixes[i] for i in rows], pad_id, device)
            row_slots = [slots[i] for i in rows] if slots is not None else None
            steps = [t.cpu() for t in _greedy(model, inputs, row_slots, multi, max_new_tokens, stops, pad_id)]
            tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in rows]
            for i, seq in zip(rows, tokens):
                cut = next((j for j, t in enumerate(seq) if t in stops), len(seq))
                replies[i] = seq[:cut]
            if reporter is not None:
                reporter.progress("generate", min(start + batch_size, n), n)
    finally:
        model.train(was_training)
    return replies


def generate_stream(
    model: torch.nn.Module,
    tokenizer,
    prompt: list[int],
    *,
    slot: int = NO_ADAPTER,
    multi: MultiLoraModel | None = None,
    max_new_tokens: int = 256,
    prefix_embeds: torch.Tensor | None = None,
) -> Iterator[str]:
    """Yield the greedy reply to ``prompt`` as text pieces, token by token, until a stop token."""
    _check_slots([slot], multi, 1)
    stops = stop_token_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, stops)
    inputs = _left_padded(model, [prompt], [prefix_embeds], pad_id, _device(model))
    was_training = model.training
    model.eval()
    ids: list[int] = []
    sent = ""
    try:
        for nxt in _greedy(model, inputs, [slot], multi, max_new_tokens, stops, pad_id):
            token = int(nxt[0])
            if token in stops:
                break
            ids.append(token)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives.
            if text.endswith("\ufffd") or not text.startswith(sent):
                continue
            if len(text) > len(sent):
                yield text[len(sent):]
                sent = text
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if text.startswith(sent) and len(text) > len(sent):
            yield text[len(sent):]
    finally:
        model.train(was_training)

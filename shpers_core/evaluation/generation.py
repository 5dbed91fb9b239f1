"""Greedy generation in batches where every row may have its own LoRA adapter, soft prompt and KV prefix.

Rows are left-padded, with position ids counted from each row's first real token, so a row's
tokens do not depend on what it is batched with. The loop is written out (prefill, then one token
at a time through the KV cache) so the adapter routing, soft prompts and prefixes stay in our hands
and the same code serves batches and the chat pane's token stream.

A KV prefix (prefix tuning) is put in the cache before the prefill: every layer's keys and values
start with the row's learned ones, right-aligned in a block as wide as the batch's longest prefix;
rows with a shorter prefix or none have zeros there, masked out. As in PEFT's own forward, a row's
prompt positions start after its prefix (at ``n_virtual``); a row without one starts at 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from shpers_core.evaluation.kv_cache import roomy_cache, select_rows
from shpers_core.events import Reporter
from shpers_core.models.chat import end_of_turn_ids
from shpers_core.training.multi import NO_ADAPTER, MultiLoraModel


def stop_token_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    """EOS and end-of-turn ids of the tokenizer, plus the model's own ``generation_config`` EOS."""
    ids = set(end_of_turn_ids(tokenizer))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(int(e) for e in eos)
    return ids


# transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40).
CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def pad_id_for(tokenizer, stops: set[int]) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        return int(pad)
    return min(stops) if stops else 0


def kv_shape(model: torch.nn.Module) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of ``model``'s attention, from its config."""
    config = model.config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, heads, head_dim


def _kv_prefix_cache(model: torch.nn.Module, kv_prefixes: Sequence[torch.Tensor | None],
                     device: torch.device) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """A cache holding each row's prefix keys and values, the prefix block's mask, each row's prefix length.

    Prefixes are right-aligned in a block as wide as the longest; the rest is zeros, masked out.
    """
    layers, heads, head_dim = kv_shape(model)
    sizes = [0 if p is None else int(p.shape[3]) for p in kv_prefixes]
    for p in kv_prefixes:
        if p is not None and (p.dim() != 5 or (*p.shape[:3], p.shape[4]) != (layers, 2, heads, head_dim)):
            raise ValueError(f"KV prefix of shape {tuple(p.shape)} does not fit this model "
                             f"(needs [{layers}, 2, {heads}, n_virtual, {head_dim}]; trained on another base model?)")
    width = max(sizes)
    dtype = model.get_input_embeddings().weight.dtype
    kv = torch.zeros((layers, 2, len(sizes), heads, width, head_dim), dtype=dtype, device=device)
    mask = torch.zeros((len(sizes), width), dtype=torch.long, device=device)
    for i, (p, size) in enumerate(zip(kv_prefixes, sizes)):
        if p is not None and size:
            kv[:, :, i, :, width - size:] = p.to(device, dtype)
            mask[i, width - size:] = 1
    cache = roomy_cache(model, [(kv[layer, 0], kv[layer, 1]) for layer in range(layers)])
    return cache, mask, torch.tensor(sizes, dtype=torch.long, device=device)


def left_padded(model: torch.nn.Module, prompts: Sequence[Sequence[int]], prefixes: Sequence[torch.Tensor | None],
                 pad_id: int, device: torch.device,
                 kv_prefixes: Sequence[torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
    """Model inputs for one batch: ``input_ids`` or, with soft prompts, ``inputs_embeds``; the mask and
    position ids; with KV prefixes, the cache that holds them (the mask then covers them too)."""
    inputs = _padded_prompts(model, prompts, prefixes, pad_id, device)
    mask = inputs["attention_mask"]
    inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    if kv_prefixes is not None and any(p is not None for p in kv_prefixes):
        cache, prefix_mask, sizes = _kv_prefix_cache(model, kv_prefixes, device)
        inputs["position_ids"] = inputs["position_ids"] + sizes[:, None]
        inputs["attention_mask"] = torch.cat([prefix_mask, mask], dim=1)
        inputs[CACHE_ARG] = cache
    return inputs


def _padded_prompts(model: torch.nn.Module, prompts: Sequence[Sequence[int]], prefixes: Sequence[torch.Tensor | None],
                    pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` (``inputs_embeds`` when a row has a soft prompt) and their mask."""
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


def _forward(model: torch.nn.Module, kwargs: dict, slots: list[int] | None, multi: MultiLoraModel | None):
    # Routing is set per call, so a paused stream never leaves it set for someone else.
    with torch.no_grad():
        if multi is None:
            return model(**kwargs)
        with multi.use_slots(slots):
            return model(**kwargs)


def prefill(model: torch.nn.Module, inputs: dict[str, torch.Tensor], slots: list[int] | None,
            multi: MultiLoraModel | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every row's keys and values of its prompt (``inputs`` as :func:`left_padded` makes them), per layer."""
    inputs = dict(inputs)
    cache = inputs.pop(CACHE_ARG, None)
    out = _forward(model, {**inputs, CACHE_ARG: cache if cache is not None else roomy_cache(model),
                           "use_cache": True, "logits_to_keep": 1}, slots, multi)
    return cache_layers(getattr(out, CACHE_ARG))


def greedy_tokens(model: torch.nn.Module, inputs: dict[str, torch.Tensor], slots: list[int] | None,
                  multi: MultiLoraModel | None, max_new_tokens: int, stops: set[int],
                  pad_id: int) -> Iterator[torch.Tensor]:
    """Yield each step's next token per row; rows that have stopped get ``pad_id``.

    Rows that have stopped leave the batch once they are a quarter of it, so the rest decode in a
    smaller one.
    """
    inputs = dict(inputs)
    mask = inputs.pop("attention_mask")
    positions = inputs.pop("position_ids")
    cache = inputs.pop(CACHE_ARG, None)
    if cache is None:
        cache = roomy_cache(model)
    rows = mask.shape[0]
    device = mask.device
    stop_t = torch.tensor(sorted(stops), dtype=torch.long, device=device)
    alive = torch.arange(rows, device=device)  # the batch rows still in the cache, in cache row order
    finished = torch.zeros(rows, dtype=torch.bool, device=device)  # of the rows in the cache
    row_slots = slots
    for _ in range(max_new_tokens):
        kwargs = {**inputs, "attention_mask": mask, "position_ids": positions, CACHE_ARG: cache,
                  "use_cache": True, "logits_to_keep": 1}
        out = _forward(model, kwargs, row_slots, multi)
        cache = getattr(out, CACHE_ARG)
        # torch's CPU argmax over bf16 runs at half its float32 speed: 5.7 ms against 3.1 ms (with
        # the cast) for 61 rows of a 49 K vocabulary, every decoding step; the cast keeps ties exact.
        nxt = out.logits[:, -1, :].float().argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        every = torch.full((rows,), pad_id, dtype=nxt.dtype, device=device)
        every[alive] = nxt
        yield every
        finished |= torch.isin(nxt, stop_t)
        done = int(finished.sum())
        if done == len(alive):
            return
        if done and 4 * done >= len(alive):
            keep = (~finished).nonzero().squeeze(1)
            select_rows(cache, keep)
            alive, nxt, mask, positions = alive[keep], nxt[keep], mask[keep], positions[keep]
            finished = finished[keep]
            if row_slots is not None:
                row_slots = [row_slots[i] for i in keep.tolist()]
        inputs = {"input_ids": nxt[:, None]}
        mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_slots(slots, multi, n: int) -> None:
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
    kv_prefixes: list[torch.Tensor | None] | None = None,
) -> list[list[int]]:
    """Greedy replies (new token ids, up to and without the stop token), in the order of ``prompts``.

    Row ``i`` uses adapter ``slots[i]`` of ``multi`` (-1: the base model) and, if given, the soft
    prompt ``prefix_embeds[i]`` ([n_virtual, hidden]) before its prompt and the prefix-tuning keys
    and values ``kv_prefixes[i]`` ([num_layers, 2, num_kv_heads, n_virtual, head_dim]) in every layer.
    """
    n = len(prompts)
    check_slots(slots, multi, n)
    if prefix_embeds is not None and len(prefix_embeds) != n:
        raise ValueError(f"{len(prefix_embeds)} soft prompts for {n} prompts")
    if kv_prefixes is not None and len(kv_prefixes) != n:
        raise ValueError(f"{len(kv_prefixes)} KV prefixes for {n} prompts")
    prefixes = list(prefix_embeds) if prefix_embeds is not None else [None] * n
    kvs = list(kv_prefixes) if kv_prefixes is not None else [None] * n
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_id_for(tokenizer, stops)
    device = model_device(model)
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
            inputs = left_padded(model, [prompts[i] for i in rows], [prefixes[i] for i in rows], pad_id, device,
                                  [kvs[i] for i in rows])
            row_slots = [slots[i] for i in rows] if slots is not None else None
            steps = [t.cpu() for t in greedy_tokens(model, inputs, row_slots, multi, max_new_tokens, stops, pad_id)]
            tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in rows]
            for i, seq in zip(rows, tokens):
                cut = next((j for j, t in enumerate(seq) if t in stops), len(seq))
                replies[i] = seq[:cut]
            if reporter is not None:
                reporter.progress("generate", min(start + batch_size, n), n)
    finally:
        model.train(was_training)
    return replies


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values), [rows, kv heads, columns, head dim]."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers before the per-layer caches


def generate_stream(
    model: torch.nn.Module,
    tokenizer,
    prompt: list[int],
    *,
    slot: int = NO_ADAPTER,
    multi: MultiLoraModel | None = None,
    max_new_tokens: int = 256,
    prefix_embeds: torch.Tensor | None = None,
    kv_prefix: torch.Tensor | None = None,
) -> Iterator[str]:
    """Yield the greedy reply to ``prompt`` as text pieces, token by token, until a stop token."""
    check_slots([slot], multi, 1)
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_id_for(tokenizer, stops)
    inputs = left_padded(model, [prompt], [prefix_embeds], pad_id, model_device(model), [kv_prefix])
    was_training = model.training
    model.eval()
    ids: list[int] = []
    sent = ""
    try:
        for nxt in greedy_tokens(model, inputs, [slot], multi, max_new_tokens, stops, pad_id):
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

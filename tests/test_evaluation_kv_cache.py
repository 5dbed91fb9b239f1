"""The KV cache that grows in place: same keys as transformers' own cache, through growth and row drops."""

import pytest
import torch
from transformers import DynamicCache

from shpers_core.evaluation.generation import CACHE_ARG
from shpers_core.evaluation.kv_cache import gathered_rooms, roomy_cache, select_rows
from shpers_core.models import load_base


@pytest.fixture(scope="module")
def base(models_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        yield load_base("tiny-qwen2", device="cpu", dtype="float32")


def decode(model, cache, prompt, steps, drop_at=None, keep=None):
    """Greedy steps on ``cache``; at step ``drop_at`` keep only rows ``keep``. Returns tokens per step."""
    ids, out = prompt, []
    mask = torch.ones_like(prompt)
    for step in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=True, **{CACHE_ARG: cache}).logits
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        if step == drop_at:
            select_rows(cache, keep)
            nxt, mask = nxt[keep], mask[keep]
        ids = nxt[:, None]
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
    return out


def test_growing_past_its_room_and_dropping_rows_match_a_plain_cache(base):
    model = base.model
    prompt = torch.randint(3, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([2, 0])
    # 40 prompt columns + 60 new ones pass the first room (40 + 64), so the buffer grows mid-reply.
    plain, roomy = DynamicCache(config=model.config), roomy_cache(model)
    a = decode(model, plain, prompt, 90, drop_at=20, keep=keep)
    b = decode(model, roomy, prompt, 90, drop_at=20, keep=keep)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for p, r in zip(plain.layers, roomy.layers):
        assert r.keys.shape == p.keys.shape == (2, p.keys.shape[1], 40 + 90 - 1, p.keys.shape[3])
        torch.testing.assert_close(r.keys, p.keys)
        torch.testing.assert_close(r.values, p.values)


def test_a_cache_built_from_given_layers_holds_them(base):
    model = base.model
    cfg = model.config
    heads = cfg.num_key_value_heads
    dim = cfg.hidden_size // cfg.num_attention_heads
    layers = [(torch.randn(2, heads, 5, dim), torch.randn(2, heads, 5, dim)) for _ in range(cfg.num_hidden_layers)]
    cache = roomy_cache(model, layers)
    assert cache.get_seq_length() == 5
    select_rows(cache, torch.tensor([1]))
    for layer, (keys, values) in zip(cache.layers, layers):
        assert torch.equal(layer.keys, keys[1:2]) and torch.equal(layer.values, values[1:2])


@pytest.mark.parametrize("layout", ["contiguous", "view of a room"])
def test_gathered_rooms_pick_each_rows_columns_and_grow_in_place(base, layout):
    model = base.model
    cfg = model.config
    heads = cfg.num_key_value_heads
    dim = cfg.hidden_size // cfg.num_attention_heads
    g = torch.Generator().manual_seed(1)

    def tensor():
        if layout == "contiguous":
            return torch.randn(3, heads, 7, dim, generator=g)
        return torch.randn(3, heads, 20, dim, generator=g)[:, :, :7]  # as a prefill's cache hands them out

    layers = [(tensor(), tensor()) for _ in range(cfg.num_hidden_layers)]
    rows = torch.tensor([2, 0, 2, 1])  # repeats: two turns of one dialogue
    columns = torch.tensor([[0, 1, 2, 3], [3, 4, 5, 6], [1, 2, 5, 6], [6, 5, 4, 3]])
    cache = gathered_rooms(model, layers, rows, columns)
    assert cache.get_seq_length() == 4
    for layer, (keys, values) in zip(cache.layers, layers):
        want_k = torch.stack([keys[r, :, c] for r, c in zip(rows, columns)])
        want_v = torch.stack([values[r, :, c] for r, c in zip(rows, columns)])
        assert torch.equal(layer.keys, want_k) and torch.equal(layer.values, want_v)
    # New columns go into the spare room after the gathered ones, without moving them.
    first = cache.layers[0]
    before = first.keys.data_ptr()
    new = torch.randn(4, heads, 2, dim, generator=g)
    keys, _ = first.update(new, new.clone())
    assert keys.data_ptr() == before and keys.shape[2] == 6
    assert torch.equal(keys[:, :, 4:], new)
    assert torch.equal(keys[:, :, :4], torch.stack([layers[0][0][r, :, c] for r, c in zip(rows, columns)]))

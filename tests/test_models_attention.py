"""bf16 training attention on the CPU: the products path equals SDPA up to bf16 rounding, trains as
PEFT does, and leaves evaluation and float32 to SDPA unchanged."""

from __future__ import annotations

import types

import pytest
import torch
from synthetic import tiny_model
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from shpers_core.events import CollectingReporter
from shpers_core.models import attention
from shpers_core.models.attention import NAME, training_attention, use_cpu_training_attention
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.multi import train_many

MODULE = types.SimpleNamespace(num_key_value_groups=2, is_causal=True, training=True)


def _inputs(dtype, rows=3, heads=4, kv_heads=2, length=10, dim=8):
    g = torch.Generator().manual_seed(0)
    # transformers hands attention [rows, heads, length, dim] views of [rows, length, heads, dim].
    q = torch.randn(rows, length, heads, dim, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    k = torch.randn(rows, length, kv_heads, dim, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    v = torch.randn(rows, length, kv_heads, dim, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    return q, k, v


def _padded_causal_mask(rows, length):
    keep = torch.ones(rows, length, dtype=torch.bool)
    keep[0, :4] = False  # left padding: row 0's first queries may attend to nothing at all
    keep[1, -3:] = False  # right padding
    return torch.ones(length, length, dtype=torch.bool).tril()[None, None] & keep[:, None, None, :]


def _output_and_grads(fn, q, k, v, mask):
    for t in (q, k, v):
        t.grad = None
    out = fn(MODULE, q, k, v, mask)[0]
    weights = torch.linspace(-1, 1, out.numel()).view(out.shape)
    (out.float() * weights).sum().backward()
    return out.detach().float(), [t.grad.float() for t in (q, k, v)]


@pytest.mark.parametrize("masked", [True, False], ids=["padding-mask", "causal-no-mask"])
def test_products_equal_float32_sdpa_up_to_bf16_rounding(masked, monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "_sdpa", lambda *a, **kw: calls.append(1) or sdpa_attention_forward(*a, **kw))
    q, k, v = _inputs(torch.bfloat16)
    mask = _padded_causal_mask(q.shape[0], q.shape[2]) if masked else None
    out, grads = _output_and_grads(training_attention, q, k, v, mask)
    assert not calls  # bf16 with gradients took the products
    ref_inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref, ref_grads = _output_and_grads(sdpa_attention_forward, *ref_inputs, mask)
    # Row 0's fully padded queries are left out: SDPA gives them NaN or zeros, the products an average.
    real = slice(None) if not masked else (slice(1, None),)
    torch.testing.assert_close(out[real], ref[real], atol=3e-2, rtol=3e-2)
    for got, want in zip(grads, ref_grads):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got[real], want[real], atol=5e-2, rtol=5e-2)


def test_inference_float32_and_long_keys_go_to_sdpa_unchanged(monkeypatch):
    for dtype, length in ((torch.float32, 10), (torch.bfloat16, attention.MAX_KEYS + 1)):
        q, k, v = _inputs(dtype, length=length)
        mask = _padded_causal_mask(q.shape[0], length)
        out, grads = _output_and_grads(training_attention, q, k, v, mask)
        ref, ref_grads = _output_and_grads(sdpa_attention_forward, q, k, v, mask)
        assert torch.equal(out.nan_to_num(), ref.nan_to_num())
        assert all(torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in zip(grads, ref_grads))
    q, k, v = _inputs(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(training_attention(MODULE, q, k, v, None)[0], sdpa_attention_forward(MODULE, q, k, v, None)[0])


def test_bf16_cpu_model_trains_through_products_and_evaluates_as_sdpa():
    model = tiny_model(dtype=torch.bfloat16)
    assert model.config._attn_implementation == "sdpa"
    assert not use_cpu_training_attention(tiny_model(dtype=torch.float32), "cpu")
    assert not use_cpu_training_attention(tiny_model(dtype=torch.bfloat16), "cuda")
    assert use_cpu_training_attention(model, "cpu") and model.config._attn_implementation == NAME
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        model.set_attn_implementation("sdpa")
        sdpa = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(ours, sdpa)  # evaluation and chat compute exactly what they did

    # Training: the batched trainer through the products ends as close to a float32 run as it does
    # through SDPA (both round in bf16, each its own way).
    from test_training_multi_lora import DATA

    lora, params = LoraParams(lora_dropout=0.0), TrainParams(num_epochs=2, batch_size=2, learning_rate=5e-3)

    def trained(model):
        return train_many(model, 0, DATA, lora, params, CollectingReporter()).state_dicts

    def mean_distance(a, b):
        diffs = [(a[p][k] - b[p][k]).abs() for p in a for k in a[p]]
        return float(sum(d.sum() for d in diffs) / sum(d.numel() for d in diffs))

    exact, via_sdpa = trained(tiny_model(dtype=torch.float32)), trained(tiny_model(dtype=torch.bfloat16))
    products = tiny_model(dtype=torch.bfloat16)
    use_cpu_training_attention(products, "cpu")
    via_products = trained(products)
    assert mean_distance(via_products, via_sdpa) > 0  # the products really ran
    assert mean_distance(via_products, exact) <= 1.25 * mean_distance(via_sdpa, exact)


def test_load_base_gives_a_bf16_cpu_model_the_training_attention(tiny_base, shpers_cache):
    from shpers_core.models import load_base

    assert tiny_base.model.config._attn_implementation == "sdpa"  # float32 keeps SDPA
    assert load_base("tiny-qwen2", device="cpu", dtype="bfloat16").model.config._attn_implementation == NAME

"""LoRA dropout on a CPU: the configured rate, an unbiased output, replayable draws, in both trainers."""

import pytest
import torch
from peft import get_peft_model, get_peft_model_state_dict
from torch import nn

from shpers_core.training.config import LoraParams
from shpers_core.training.dropout import LoraDropout, lora_dropout, word_threshold
from shpers_core.training.fit import add_lora, lora_config


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_drops_the_configured_share_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = lora_dropout(x, p, True)
    dropped = (y == 0).double()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(float(dropped.mean()) - p) < 5 * sigma
    # Each of the four 16-bit words of a 64-bit draw must be uniform, not only their sum.
    for word in range(4):
        share = float(dropped.flatten()[word::4].mean())
        assert abs(share - p) < 5 * sigma * 2
    assert abs(float(y.double().mean()) - 1.0) < 5 * sigma / (1 - p)
    values = torch.unique(y).tolist()
    assert values == [0.0, pytest.approx(1 / (1 - word_threshold(p) / 65536))]


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(4, 30, 64, requires_grad=True)
    y = lora_dropout(x, 0.2, True)
    y.sum().backward()
    kept = y.detach() != 0
    scale = 1 / (1 - word_threshold(0.2) / 65536)
    assert torch.equal(x.grad, kept.float() * scale)
    assert torch.allclose(y.detach()[kept], x.detach()[kept] * scale)


def test_same_rng_state_same_mask():
    x = torch.randn(8, 100)
    state = torch.get_rng_state()
    first = lora_dropout(x, 0.1, True)
    torch.set_rng_state(state)
    assert torch.equal(lora_dropout(x, 0.1, True), first)
    assert not torch.equal(lora_dropout(x, 0.1, True), first)


def test_evaluation_and_rate_zero_pass_the_input_through():
    x = torch.randn(3, 5)
    assert lora_dropout(x, 0.5, False) is x
    assert lora_dropout(x, 0.0, True) is x


def test_a_rate_that_16_bits_cannot_hold_keeps_torchs_dropout():
    assert word_threshold(0.05) == 3277
    assert word_threshold(1e-6) is None  # rounds to no drop at all
    assert word_threshold(0.0001) is None  # 7/65536 is 7 % off
    torch.manual_seed(2)
    x = torch.ones(2000, 1000)
    assert 0 < int((lora_dropout(x, 1e-5, True) == 0).sum()) < 100  # still drops, at about 20 of 2 M


def test_a_peft_adapter_trains_with_it_and_saves_the_same_keys(tiny_base):
    lora = LoraParams(lora_dropout=0.1)
    peft_model = add_lora(tiny_base.model, lora, seed=0)
    try:
        swapped = [m for m in peft_model.modules() if isinstance(m, LoraDropout)]
        lora_layers = [m for m in peft_model.modules() if hasattr(m, "lora_A") and isinstance(m.lora_A, nn.ModuleDict)]
        assert len(swapped) == len(lora_layers) > 0
        assert not any(type(m) is nn.Dropout for layer in lora_layers for m in layer.lora_dropout.values())
        # Dropout is live in training and gone in evaluation.
        ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
        layer = lora_layers[0]
        with torch.no_grad():
            layer.lora_B["default"].weight.fill_(1.0)
        peft_model.train()
        torch.manual_seed(3)
        a = peft_model(input_ids=ids).logits
        b = peft_model(input_ids=ids).logits
        assert not torch.equal(a, b)
        peft_model.eval()
        assert torch.equal(peft_model(input_ids=ids).logits, peft_model(input_ids=ids).logits)
        keys = set(get_peft_model_state_dict(peft_model))
    finally:
        peft_model.unload()
    plain = get_peft_model(tiny_base.model, lora_config(lora))
    try:
        assert keys == set(get_peft_model_state_dict(plain))
    finally:
        plain.unload()

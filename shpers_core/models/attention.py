"""Attention for bf16 training on a CPU: two matrix products and a float32 softmax instead of SDPA.

torch's CPU ``scaled_dot_product_attention`` computes bf16 attention with a flash kernel whose
backward pass is slow at the lengths of a dialogue: on a 2-core AVX512-BF16 CPU, SmolLM2's shape
(9 query heads, 64 wide), causal mask, forward plus backward, medians of 10 calls:

=============  =========  ==============
rows x keys    bf16 SDPA  bf16 products
=============  =========  ==============
4 x 64         5.1 ms     1.8 ms
4 x 128        10.3 ms    6.0 ms
16 x 128       39.8 ms    14.2 ms
4 x 200        16.5 ms    12.5 ms
4 x 300        31.3 ms    26.5 ms
4 x 512        65.8 ms    85.1 ms
=============  =========  ==============

In float32, SDPA is as fast or faster at every size, and without gradients (evaluation, chat) it is
faster too. So a CPU model in bf16 attends through :func:`training_attention`, which takes the
products only while gradients flow and the keys are at most :data:`MAX_KEYS` long, and hands every
other call to transformers' own SDPA function unchanged: evaluation and chat compute exactly what
they did. The products are what transformers' eager attention computes, without copying the key
and value heads that several query heads share.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

# The name the attention function and its mask are registered under in transformers.
NAME = "shpers_cpu_training"
# Longer keys train faster through SDPA (table above); the products' memory grows with their square.
MAX_KEYS = 256


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def _takes_products(module, query, key, value, attention_mask, dropout, kwargs) -> bool:
    return (query.device.type == "cpu" and query.dtype == torch.bfloat16 and torch.is_grad_enabled()
            and (query.requires_grad or key.requires_grad or value.requires_grad)
            and key.shape[2] <= MAX_KEYS and query.shape[1] % key.shape[1] == 0
            and not (dropout and module.training)
            and (attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1))
            and not any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "s_aux", "sinks"))
            and not kwargs.get("output_attentions"))


def training_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                       is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` ``[rows, heads, q_len, dim]``, ``key`` and
    ``value`` ``[rows, kv_heads, keys, dim]``, the mask as ``sdpa_mask`` makes it (boolean, True where a
    query may attend, or None for plain causal); returns ``([rows, q_len, heads, dim], None)``."""
    if not _takes_products(module, query, key, value, attention_mask, dropout, kwargs):
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                     is_causal=is_causal, **kwargs)
    rows, heads, q_len, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    # Query heads that share a key head become that head's rows (head h reads key head h // group,
    # as transformers' repeat_kv has it), so keys and values are never copied per query head.
    grouped = (query * scale).reshape(rows, kv_heads, group * q_len, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).view(rows, kv_heads, group, q_len, keys)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and q_len > 1 and causal:
        # SDPA's is_causal: query i sees keys 0..i (transformers leaves the mask out only when
        # queries and keys are the same positions).
        attention_mask = torch.ones(q_len, keys, dtype=torch.bool, device=query.device).tril()[None, None]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            # The dtype's lowest finite value, not -inf: a padded query that may attend to nothing
            # then averages its keys instead of turning into NaN, which its zero gradient would carry
            # into the weights' gradients (0 x NaN).
            scores = scores.masked_fill(~attention_mask[:, :, None], torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[:, :, None]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs.view(rows, kv_heads, group * q_len, keys), value)
    return out.view(rows, heads, q_len, value.shape[-1]).transpose(1, 2).contiguous(), None


def use_cpu_training_attention(model: torch.nn.Module, device: str) -> bool:
    """Let a bf16 model on a CPU that attends through SDPA train through :func:`training_attention`.

    Returns whether it does. Anything else (a GPU, float32, eager or flash attention, a transformers
    without these hooks) keeps its attention as it was.
    """
    config = getattr(model, "config", None)
    dtype = next(model.parameters()).dtype
    if (not device.startswith("cpu") or dtype != torch.bfloat16
            or getattr(config, "_attn_implementation", None) != "sdpa"):
        return False
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, training_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        model.set_attn_implementation(NAME)
    except (ImportError, AttributeError, ValueError, KeyError) as error:
        log.info("training attention stays SDPA: %s", error)
        return False
    return config._attn_implementation == NAME

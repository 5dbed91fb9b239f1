"""Random models and token sequences for trainer tests that need no tokenizer or dataset."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from shpers_core.training.batching import IGNORE_INDEX, Example

VOCAB = 256


def tiny_model(hidden: int = 64, vocab: int = VOCAB, dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    """A two-layer Qwen2 with weights from seed 0, in eval mode, in ``dtype``."""
    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab)
    return Qwen2ForCausalLM(cfg).to(dtype).eval()


def examples(n: int, seed: int = 0, pid: str = "", vocab: int = VOCAB, max_length: int = 20) -> list[Example]:
    """``n`` random sequences whose second half is the scored reply."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(8, max_length, (1,), generator=g))
        ids = torch.randint(1, vocab, (length,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (length // 2) + ids[length // 2:]
        out.append(Example(tuple(ids), tuple(labels), pid))
    return out

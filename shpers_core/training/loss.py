"""Next-token loss computed only where a label is: the language-model head runs on labelled positions.

A dialogue's assistant tokens are about a third of it, and the head is the widest matrix of a small
model (49 K x 576 on SmolLM2). The model runs with ``logits_to_keep=1``, the decoder's last hidden
states are taken by a forward hook, and the head plus cross-entropy (in float32) run on the
labelled positions only. The logits the model returned for its last position check that the
head really is the plain output layer; where it is not (a soft-capped or scaled head), the full
logits are computed instead, so the loss is always the model's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shpers_core.training.batching import IGNORE_INDEX, token_loss_sum


def _decoder_and_head(model: torch.nn.Module):
    try:
        return model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None, None


def _last_hidden(output) -> torch.Tensor:
    if isinstance(output, tuple):
        return output[0]
    return output.last_hidden_state


def labelled_loss_sum(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy per row and scored tokens per row, as :func:`token_loss_sum`
    gives on the model's full logits, with the head computed on labelled positions only."""
    decoder, head = _decoder_and_head(model)
    if decoder is None or head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return token_loss_sum(logits[:, logits.size(1) - labels.size(1):], labels)
    captured: list[torch.Tensor] = []
    handle = decoder.register_forward_hook(lambda _m, _a, out: captured.append(_last_hidden(out)))
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    finally:
        handle.remove()
    hidden = captured[-1]
    last = head(hidden[:, -1:])
    if last.shape != out.logits.shape or not torch.allclose(last.float(), out.logits.float(), atol=1e-3, rtol=1e-3):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return token_loss_sum(logits[:, logits.size(1) - labels.size(1):], labels)
    # Prompt tuning puts virtual tokens before the sequence: keep the positions of real tokens.
    hidden = hidden[:, hidden.size(1) - labels.size(1):]
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    rows = valid.nonzero()[:, 0]
    picked = hidden[:, :-1][valid]
    per_tok = F.cross_entropy(head(picked).float(), targets[valid], reduction="none")
    sums = torch.zeros(labels.size(0), dtype=per_tok.dtype, device=per_tok.device).index_add(0, rows, per_tok)
    return sums, valid.sum(dim=1)


def padding_share(lengths: list[int]) -> tuple[int, int]:
    """(padded positions, real tokens) of one batch padded to its longest row."""
    if not lengths:
        return 0, 0
    return len(lengths) * max(lengths) - sum(lengths), sum(lengths)


class Throughput:
    """Speed figures of a trainer's result, from its ``tokens``, ``padded`` and ``seconds`` fields."""

    tokens: int
    padded: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def padding_share(self) -> float:
        return self.padded / max(1, self.padded + self.tokens)


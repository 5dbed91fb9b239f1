"""litgpt's habit: a short validation pass before the first step, so that a broken set-up (a model
that cannot take the batch, a template without assistant tokens, a loss that is NaN from the start)
fails in seconds with a message, not after an epoch of training."""

from __future__ import annotations

import math

from shpers_core.errors import UserError

SANITY_BATCHES = 2
"""Batches of the validation set (the training set when there is none) checked before training."""


class SetupBroken(UserError):
    """The loss before any training is not a number: the base model, its dtype or the data is broken."""


def check_before_training(loss: float, examples: int, series: str) -> str:
    """The log line for a sane start; :class:`SetupBroken` when ``loss`` is NaN or infinite."""
    if not math.isfinite(loss):
        raise SetupBroken(f"{series}: before any training the loss on the first {examples} examples is {loss}; "
                          "the base model, its dtype or the data is broken (try --dtype float32, or check "
                          "the dataset's assistant turns)")
    return f"{series}: sanity check before training, loss {loss:.4f} on {examples} examples"

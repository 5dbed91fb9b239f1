"""Training and LoRA settings; defaults from the study's Appendix A (unified LoRA)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shpers_core.params import Params, param


@dataclass
class LoraParams(Params):
    title = "LoRA"
    rank: int = param(8, "LoRA rank r: the inner size of the low-rank update B·A.", min=1, max=1024)
    lora_alpha: float = param(16.0, "LoRA alpha; the update is scaled by alpha / rank.", min=0, min_exclusive=True)
    lora_dropout: float = param(0.05, "Dropout on the LoRA input during training.", min=0.0, max=0.95)
    target_modules: list = param(["q_proj", "v_proj"], "Linear layers that get an adapter (comma-separated).")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.rank


@dataclass
class TrainParams(Params):
    title = "Training"
    learning_rate: float = param(5e-4, "Peak AdamW learning rate.", min=0.0, min_exclusive=True, max=1.0)
    num_epochs: int = param(3, "Passes over each adapter's training dialogues.", min=1, max=1000)
    batch_size: int = param(4, "Dialogues per optimiser step (per adapter).", min=1, max=4096)
    group_by_length: bool = param(
        True, "Batch dialogues of similar length together (less padding); batches stay in a seeded order."
    )
    warmup_ratio: float = param(0.1, "Share of steps with a linear learning-rate warm-up.", min=0.0, max=1.0)
    weight_decay: float = param(0.01, "AdamW decoupled weight decay.", min=0.0, max=1.0)
    max_grad_norm: float = param(1.0, "Gradient clipping norm per adapter (0 turns it off).", min=0.0)
    max_length: int = param(512, "Longest tokenised dialogue; longer ones are cut from the left.", min=16)
    early_stopping_patience: int = param(
        0, "Stop after this many epochs without a better validation loss (0 turns it off).", min=0
    )
    seed: int = param(0, "Seed for initialisation, shuffling and dropout.", min=0, max=2**31 - 1)
    checkpoint_every: int = param(
        50, "Save a resumable checkpoint every this many optimiser steps (and at each epoch end).", min=1
    )

    def total_steps(self, n_examples: int) -> int:
        return math.ceil(n_examples / self.batch_size) * self.num_epochs

    def warmup_steps(self, n_examples: int) -> int:
        # Same rounding as transformers' TrainingArguments.get_warmup_steps.
        return math.ceil(self.total_steps(n_examples) * self.warmup_ratio)


def learning_rate_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up then linear decay to zero (transformers' ``get_linear_schedule_with_warmup``).

    ``step`` counts optimiser steps already taken (0 for the first).
    """
    if step < warmup:
        return peak * step / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))

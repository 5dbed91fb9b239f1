"""The data and evaluation settings every job has (the typed group ``eval``)."""

from __future__ import annotations

from dataclasses import dataclass

from shpers_core.params import Params, param


@dataclass
class EvalParams(Params):
    title = "Data and evaluation"
    split_seed: int = param(0, "Seed of the per-persona train/validation/test split.", min=0, max=2**31 - 1)
    max_train_dialogues: int = param(0, "Use at most this many training dialogues per persona (0: all).", min=0)
    max_test_dialogues: int = param(0, "Score at most this many test dialogues per persona (0: all).", min=0)
    max_new_tokens: int = param(64, "Longest generated reply, in tokens.", min=1, max=4096)
    eval_batch_size: int = param(
        64, "Replies generated at once (rows may use different adapters); a fuller batch decodes each row for less.",
        min=1,
    )
    system_prompt: str = param("", "System prompt for training and replies (empty: the chat template's own).")

"""Tokenised examples, the order an adapter sees them in, and padding into tensors.

Both the one-adapter trainer and the batched multi-adapter trainer use :func:`step_plan`, so
that an adapter trained in a batch of 200 sees exactly the batches it would see alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shpers_core.training.config import TrainParams

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenised dialogue; ``labels`` is ``IGNORE_INDEX`` except on assistant tokens."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    persona_id: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """The shuffled order of ``n`` examples in ``epoch``: depends only on (n, epoch, seed)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


# Batches per length-sorted window, as transformers' LengthGroupedSampler sorts "megabatches" of 50.
GROUP_WINDOW = 50


def batches_for(lengths: Sequence[int], batch_size: int, num_epochs: int, seed: int,
                group_by_length: bool = False) -> list[list[int]]:
    """Every optimiser step's example indices, epoch after epoch; one batch of an epoch may be short.

    ``lengths`` are the examples' token counts. With ``group_by_length`` each epoch's shuffled order
    is cut into windows of ``GROUP_WINDOW`` batches, each window is sorted by length and cut into
    batches, and those batches are shuffled: a batch pads to a length close to its own rows'.
    """
    n = len(lengths)
    out = []
    for epoch in range(num_epochs):
        order = epoch_order(n, epoch, seed)
        if not group_by_length:
            out.extend(order[i : i + batch_size] for i in range(0, n, batch_size))
            continue
        span = batch_size * GROUP_WINDOW
        for w in range(0, n, span):
            window = sorted(order[w : w + span], key=lambda i: -lengths[i])  # stable: ties keep the shuffle
            batches = [window[i : i + batch_size] for i in range(0, len(window), batch_size)]
            g = torch.Generator().manual_seed((seed * 100_003 + epoch) * 7919 + w // span + 1)
            out.extend(batches[j] for j in torch.randperm(len(batches), generator=g).tolist())
    return out


def step_plan(examples: Sequence[Example], params: TrainParams) -> list[list[int]]:
    """Every optimiser step's indices into ``examples`` under ``params``: the plan both trainers follow."""
    return batches_for([len(e) for e in examples], params.batch_size, params.num_epochs, params.seed,
                       params.group_by_length)


def collate(examples: list[Example], pad_id: int, *, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest example; returns input_ids, attention_mask and labels."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e)
        sl = slice(width - n, width) if left else slice(0, n)
        ids[i, sl] = torch.tensor(e.input_ids)
        labels[i, sl] = torch.tensor(e.labels)
        mask[i, sl] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy per row and the count of scored tokens per row.

    The loss of a batch is ``sum / count`` over its rows: the mean over assistant tokens, as
    transformers computes it, and separable by row for the multi-adapter trainer.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    per_tok = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    valid = (shift_labels != IGNORE_INDEX)
    return (per_tok * valid).sum(dim=1), valid.sum(dim=1)

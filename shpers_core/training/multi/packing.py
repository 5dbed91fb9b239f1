"""Micro-batches of a global step's rows: sorted by length, bounded in rows or padded tokens."""

from __future__ import annotations

from shpers_core.training.batching import IGNORE_INDEX, Example

# Padded tokens per micro-batch when no row count is given. On a GPU, logits dominate memory: at
# 4096 tokens Qwen2.5's 152k vocabulary needs ~8 GB for logits, their fp32 copy and the loss's
# gradient, which with the activations of a 0.5B model fits a 24 GB GPU whatever the number of
# personas. A CPU gains nothing from big batches and loses cache: SmolLM2-135M on 2 cores trained at
# ~210 tokens/s with 512-1024-token micro-batches and ~150 with 4096.
DEFAULT_MICRO_BATCH_TOKENS = {"cuda": 4096, "cpu": 1024, "mps": 1024}


def micro_batches(lengths: list[int], max_rows: int | None, max_tokens: int) -> list[list[int]]:
    """Row indices grouped longest first; each group has at most ``max_rows`` rows, or else at most
    ``max_tokens`` padded tokens (a single longer row still gets a group)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        full = len(cur) >= max_rows if max_rows else (len(cur) + 1) * lengths[cur[0] if cur else i] > max_tokens
        if cur and full:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


def scored_tokens(e: Example) -> int:
    # token_loss_sum scores labels[1:], the next-token targets.
    return sum(1 for x in e.labels[1:] if x != IGNORE_INDEX)


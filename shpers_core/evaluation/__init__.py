"""Scoring replies and comparing methods: embedding similarity, secondary metrics, paired statistics."""

from shpers_core.evaluation.embedding import EmbeddingScorer
from shpers_core.evaluation.stats import PairedStats, StatsError, describe, paired_comparison

__all__ = [
    "EmbeddingScorer",
    "PairedStats",
    "StatsError",
    "describe",
    "paired_comparison",
]

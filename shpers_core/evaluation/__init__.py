"""Scoring replies and comparing methods: embedding similarity, secondary metrics, paired statistics."""

from shpers_core.evaluation.embedding import EmbeddingScorer
from shpers_core.evaluation.metrics import (
    METRIC_LABELS,
    METRIC_NAMES,
    device_precision,
    numerical_precision,
    parameter_f1,
    score_reply,
)
from shpers_core.evaluation.parsing import Device, Parameter, ParsedReply, parse_reply
from shpers_core.evaluation.stats import PairedStats, StatsError, describe, paired_comparison

__all__ = [
    "METRIC_LABELS",
    "METRIC_NAMES",
    "Device",
    "EmbeddingScorer",
    "PairedStats",
    "Parameter",
    "ParsedReply",
    "StatsError",
    "describe",
    "device_precision",
    "numerical_precision",
    "paired_comparison",
    "parameter_f1",
    "parse_reply",
    "score_reply",
]

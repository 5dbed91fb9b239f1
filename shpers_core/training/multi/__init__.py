"""Stacked multi-adapter LoRA: many adapters trained and served together on one base model."""

from shpers_core.training.multi.adamw import StackedAdamW, clip_grad_norm_per_adapter
from shpers_core.training.multi.lora import NO_ADAPTER, MultiLoraModel, SlotRouter, StackedLoraLinear
from shpers_core.training.multi.trainer import (
    DEFAULT_MICRO_BATCH_TOKENS,
    PER_ADAPTER_EVENTS_MAX,
    MultiFitResult,
    micro_batches,
    peft_init_state,
    train_many,
)

__all__ = [
    "DEFAULT_MICRO_BATCH_TOKENS", "NO_ADAPTER", "PER_ADAPTER_EVENTS_MAX", "MultiFitResult", "MultiLoraModel",
    "SlotRouter", "StackedAdamW", "StackedLoraLinear", "clip_grad_norm_per_adapter", "micro_batches",
    "peft_init_state", "train_many",
]

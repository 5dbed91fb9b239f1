"""Stacked multi-adapter LoRA: many adapters trained and served together on one base model."""

from shpers_core.training.multi.adamw import StackedAdamW, clip_grad_norm_per_adapter
from shpers_core.training.multi.fingerprint import checkpointed_adapters
from shpers_core.training.multi.loop import PER_ADAPTER_EVENTS_MAX, MultiFitResult
from shpers_core.training.multi.lora import NO_ADAPTER, MultiLoraModel, SlotRouter, StackedLoraLinear
from shpers_core.training.multi.packing import DEFAULT_MICRO_BATCH_TOKENS, micro_batches
from shpers_core.training.multi.trainer import peft_init_state, train_many

__all__ = [
    "DEFAULT_MICRO_BATCH_TOKENS", "NO_ADAPTER", "PER_ADAPTER_EVENTS_MAX", "MultiFitResult", "MultiLoraModel",
    "SlotRouter", "StackedAdamW", "StackedLoraLinear", "checkpointed_adapters", "clip_grad_norm_per_adapter",
    "micro_batches",
    "peft_init_state", "train_many",
]

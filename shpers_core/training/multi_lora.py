"""The batched multi-adapter LoRA engine's public names (implemented in :mod:`shpers_core.training.multi`)."""

from shpers_core.training.multi import (  # noqa: F401
    DEFAULT_MICRO_BATCH_TOKENS,
    NO_ADAPTER,
    PER_ADAPTER_EVENTS_MAX,
    MultiFitResult,
    MultiLoraModel,
    micro_batches,
    peft_init_state,
    train_many,
)

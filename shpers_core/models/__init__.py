"""Base models (embedded SmolLM2, Qwen2.5, tiny test models, any saved or hub model) and chat encoding."""

from .chat import decode_reply, encode_dialogue, encode_prompt, encode_prompt_within, to_chat
from .device import automatic_choice, describe_device, pick_device, pick_dtype
from .errors import ModelError
from .registry import DEFAULT_MODEL, MODEL_NAMES, BaseModel, describe_models, load_base

__all__ = [
    "DEFAULT_MODEL", "MODEL_NAMES", "BaseModel", "ModelError", "automatic_choice", "build_tiny_qwen2", "decode_reply",
    "describe_device", "describe_models", "encode_dialogue", "encode_prompt", "encode_prompt_within", "load_base", "pick_device",
    "pick_dtype", "to_chat",
]


def __getattr__(name: str):
    if name == "build_tiny_qwen2":
        # lazy: like the loaders; building a model is the only reason to import transformers.
        from .tiny import build_tiny_qwen2

        return build_tiny_qwen2
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

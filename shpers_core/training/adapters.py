"""Adapters on disk in PEFT's own format, so anyone can load them with ``PeftModel.from_pretrained``.

Folders are written atomically; weights are read with safetensors only, configs as JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shpers_core.atomic import atomic_write_dir
from shpers_core.errors import UserError
from shpers_core.training.adapter_types import Adapter

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


class AdapterError(UserError):
    """An adapter folder that is missing, malformed, or made for another base model."""


def write_peft_folder(out_dir: Path | str, config, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> Path:
    """Write a PEFT config and its safetensors weights as one folder, atomically (temp dir, rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            # A last optimiser step can overflow after the last finite loss: such an adapter is never saved.
            raise AdapterError(f"{out_dir}: {key} holds NaN or infinite values after training; not saved "
                               "(lower train.learning_rate)")

    def write(tmp: Path) -> None:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", **(metadata or {})})

    atomic_write_dir(Path(out_dir), write)
    return Path(out_dir)


def save_lora_adapter(
    out_dir: Path, state_dict: dict[str, torch.Tensor], *, rank: int, lora_alpha: float,
    target_modules: list[str], base_model: str, dropout: float = 0.0,
) -> Path:
    config = LoraConfig(r=rank, lora_alpha=lora_alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type="CAUSAL_LM", base_model_name_or_path=base_model)
    return write_peft_folder(out_dir, config, state_dict)


def read_config(path: Path) -> dict:
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise AdapterError(f"{path}: not an adapter folder (needs {CONFIG} and {WEIGHTS})")
    try:
        return json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path / CONFIG}: not valid JSON ({exc})") from None


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; :class:`AdapterError` if it is truncated or not safetensors."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{file}: unreadable weights ({str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "the file is truncated or not safetensors") from None


def _read_peft_folder(path: Path, peft_type: str, what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and weights of a PEFT folder that must hold a ``peft_type`` adapter."""
    config = read_config(path)
    if not isinstance(config, dict):
        raise AdapterError(f"{path / CONFIG}: must be a JSON object")
    if config.get("peft_type") != peft_type:
        raise AdapterError(f"{path}: a {config.get('peft_type')} adapter, not {what}")
    return config, read_weights(Path(path) / WEIGHTS)


def _positive_number(config: dict, key: str, path: Path, *, integer: bool) -> float:
    value = config.get(key)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        shown = "missing" if key not in config else repr(value)
        raise AdapterError(f"{Path(path) / CONFIG}: '{key}' is {shown}; it must be a positive "
                           f"{'integer' if integer else 'number'}")
    return value


def load_lora_adapter(path: Path) -> Adapter:
    """Read a PEFT LoRA folder; the scale is ``lora_alpha / r`` from its config."""
    config, state = _read_peft_folder(path, "LORA", "LoRA")
    rank = _positive_number(config, "r", path, integer=True)
    alpha = _positive_number(config, "lora_alpha", path, integer=False)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AdapterError(f"{path}: weights {key} hold NaN or infinite values")
    return Adapter(state_dict=state, scaling=float(alpha) / int(rank), path=str(path))


def check_adapter_fits(adapter: Adapter, model: torch.nn.Module) -> None:
    """Raise :class:`AdapterError` if the adapter's shapes do not fit ``model`` (another base model)."""
    modules = dict(model.named_modules())
    for key, tensor in adapter.state_dict.items():
        name = key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0]
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise AdapterError(f"{adapter.path or 'adapter'}: has weights for {name!r}, which this base model lacks "
                               "(was it trained on another base model?)")
        out_features, in_features = module.weight.shape
        expected = in_features if ".lora_A." in key else out_features
        actual = tensor.shape[1] if ".lora_A." in key else tensor.shape[0]
        if actual != expected:
            raise AdapterError(f"{adapter.path or 'adapter'}: {key} has size {actual}, the base model's {name} "
                               f"needs {expected} (was it trained on another base model?)")


def save_soft_prompt(out_dir: Path, embeddings: torch.Tensor, *, base_model: str, num_layers: int,
                     token_dim: int, num_attention_heads: int) -> Path:
    """Save learned prompt embeddings [n_virtual, hidden] as a PEFT prompt-tuning adapter."""
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=embeddings.shape[0],
                                token_dim=token_dim, num_transformer_submodules=1, num_layers=num_layers,
                                num_attention_heads=num_attention_heads, base_model_name_or_path=base_model)
    return write_peft_folder(out_dir, config, {"prompt_embeddings": embeddings})


def load_soft_prompt(path: Path) -> torch.Tensor:
    weights = _read_peft_folder(path, "PROMPT_TUNING", "prompt tuning")[1]
    if "prompt_embeddings" not in weights:
        raise AdapterError(f"{path}: no prompt_embeddings in {WEIGHTS}")
    return weights["prompt_embeddings"]


# --- Prefix tuning (key/value prefixes per layer) ----------------------------------------------
# PEFT stores a prefix-tuning adapter as ``prompt_embeddings`` [n_virtual, num_layers * 2 * token_dim],
# ``token_dim`` being ``num_attention_heads * head_dim`` of the keys and values (the KV heads under
# grouped-query attention). Layer ``i``'s keys are slot ``2 i`` of the middle axis, its values ``2 i + 1``.

def prefix_key_values(embeddings: torch.Tensor, *, num_layers: int, num_heads: int) -> torch.Tensor:
    """PEFT's flat prefix [n_virtual, num_layers * 2 * token_dim] as [num_layers, 2, num_heads, n_virtual, head_dim]."""
    n_virtual, width = embeddings.shape
    if width % (num_layers * 2 * num_heads):
        raise AdapterError(f"prefix of width {width} does not split into {num_layers} layers x 2 x {num_heads} heads")
    head_dim = width // (num_layers * 2 * num_heads)
    kv = embeddings.reshape(n_virtual, num_layers * 2, num_heads, head_dim).permute(1, 2, 0, 3)
    return kv.reshape(num_layers, 2, num_heads, n_virtual, head_dim).contiguous()


def save_prefix_tuning(out_dir: Path, embeddings: torch.Tensor, *, base_model: str, num_layers: int,
                       token_dim: int, num_attention_heads: int) -> Path:
    """Save a PEFT prefix-tuning adapter from its flat prefix [n_virtual, num_layers * 2 * token_dim].

    ``token_dim`` and ``num_attention_heads`` are those of the keys and values, as PEFT sets them.
    """
    if embeddings.shape[1] != num_layers * 2 * token_dim:
        raise AdapterError(f"prefix of width {embeddings.shape[1]} is not {num_layers} layers x 2 x {token_dim}")
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=embeddings.shape[0], token_dim=token_dim,
                                num_transformer_submodules=1, num_layers=num_layers,
                                num_attention_heads=num_attention_heads, encoder_hidden_size=token_dim,
                                prefix_projection=False, base_model_name_or_path=base_model)
    return write_peft_folder(out_dir, config, {"prompt_embeddings": embeddings})


def load_prefix_tuning(path: Path) -> torch.Tensor:
    """A PEFT prefix-tuning folder's keys and values, [num_layers, 2, num_heads, n_virtual, head_dim]."""
    config, weights = _read_peft_folder(path, "PREFIX_TUNING", "prefix tuning")
    if config.get("prefix_projection"):
        raise AdapterError(f"{path}: prefix tuning with a projection is not supported")
    if "prompt_embeddings" not in weights:
        raise AdapterError(f"{path}: no prompt_embeddings in {WEIGHTS}")
    layers = _positive_number(config, "num_layers", path, integer=True)
    heads = _positive_number(config, "num_attention_heads", path, integer=True)
    return prefix_key_values(weights["prompt_embeddings"], num_layers=layers, num_heads=heads)

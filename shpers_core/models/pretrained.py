"""Models saved in the Hugging Face format: a local folder or a hub id."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .errors import ModelError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """``org/name`` as the hub spells repository ids (a bare ``name`` is not taken as one)."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1


def check_local_folder(path: Path) -> None:
    """ModelError unless ``path`` is a folder holding a causal language model's config."""
    if not path.exists():
        raise ModelError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelError(f"not a model folder (a file was given): {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(f"not a saved Hugging Face model (no config.json): {path}")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"unreadable config.json in {path}: {exc}") from exc
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"not a causal language model (model_type {model_type!r}): {path}")


def load_pretrained(source: str | Path, label: str, dtype: torch.dtype, hub: bool):
    """Model (on the CPU, eval mode) and tokenizer from a folder or hub id; ModelError with one line if not."""
    where = f"'{label}' from the Hugging Face hub" if hub else f"'{label}'"
    try:
        if hub:
            config = AutoConfig.from_pretrained(source)
            if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
                raise ModelError(f"'{label}' is not a causal language model (model_type {config.model_type!r})")
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        if hub:
            raise ModelError(f"could not load {where} (offline?)") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"could not load model {where}: {first}") from exc
    return model.eval(), tokenizer

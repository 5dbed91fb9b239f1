"""The engine names the app calls, gathered in one module.

The engine packages export these from their ``__init__``; while a package is still being
written its names may only exist in a submodule, so each lookup falls back to that submodule.
Keeping every such lookup here means the views never care which one answered.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_dataset": ("shpers_core.data", "shpers_core.data.loader"),
    "generate_dataset": ("shpers_core.data", "shpers_core.data.generate"),
    "write_jsonl": ("shpers_core.data", "shpers_core.data.io", "shpers_core.data.loader"),
    "split_dataset": ("shpers_core.data", "shpers_core.data.split", "shpers_core.data.splits"),
    "DatasetError": ("shpers_core.data", "shpers_core.data.errors"),
    "paired_comparison": ("shpers_core.evaluation", "shpers_core.evaluation.stats"),
    "EmbeddingScorer": ("shpers_core.evaluation", "shpers_core.evaluation.embedding"),
    "study_rows": ("shpers_core.evaluation.table",),
    "to_markdown": ("shpers_core.evaluation.table",),
    "to_csv": ("shpers_core.evaluation.table",),
    "ChatSession": ("shpers_core.jobs.chat",),
    "study_specs": ("shpers_core.jobs.study",),
    "PRESETS": ("shpers_core.jobs.study",),
}


def get(name: str) -> Any:
    """The engine object called ``name``; raises ImportError naming where it was looked for."""
    for module in _WHERE[name]:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise ImportError(f"the engine does not provide {name} yet (looked in {', '.join(_WHERE[name])})")


def has(name: str) -> bool:
    try:
        get(name)
    except ImportError:
        return False
    return True


def write_dataset(dataset, path) -> None:
    """Write ``dataset`` as JSONL at ``path`` (parent folders created)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    get("write_jsonl")(dataset, path)

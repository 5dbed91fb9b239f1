"""Where a run's score for a persona came from: the adapter and the prompt or prefix that answered.

Read from the run's ``plan.json`` (what evaluation used and chat rebuilds), so the app can say it
next to every score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _part(kind: str, path: str, run_id: str, name: str | None = None) -> str:
    p = Path(path)
    owner = p.parent.parent.name if p.parent.name == "adapters" else ""
    # ``name``: the persona id or cluster as written; the folder's own name is derived from it.
    return f"{kind} '{name or p.name}'" + (f" of run {owner}" if owner and owner != run_id else "")


def describe_recipe(recipe: dict[str, Any] | None, run_id: str = "") -> str:
    """One line: the adapter (persona, cluster, merge or unified), system prompt, soft prompt, KV prefix."""
    if recipe is None:
        return "not covered by this run"
    parts = [_part("LoRA adapter", recipe["adapter"], run_id, recipe.get("adapter_name")) if recipe.get("adapter") else "no adapter (base model)"]
    system = recipe.get("system")
    if system:
        short = " ".join(system.split())
        parts.append(f"system prompt “{short[:70]}{'…' if len(short) > 70 else ''}”")
    if recipe.get("soft_prompt"):
        parts.append(_part("soft prompt", recipe["soft_prompt"], run_id, recipe.get("soft_prompt_name")))
    if recipe.get("kv_prefix"):
        parts.append(_part("KV prefix", recipe["kv_prefix"], run_id, recipe.get("kv_prefix_name")))
    if recipe.get("retrieval_examples"):
        parts.append(f"{recipe['retrieval_examples']} retrieved past exchanges in the system prompt")
    return " + ".join(parts)


def run_recipes(workspace, run_id: str) -> dict[str, dict[str, Any]]:
    """Per persona, the recipe recorded in the run's ``plan.json``; empty if the run has none (yet)."""
    path = workspace.run_dir(run_id) / "plan.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def score_sources(workspace, run_id: str) -> dict[str, str]:
    """Per persona, :func:`describe_recipe` of what answered it in ``run_id``."""
    return {pid: describe_recipe(r, run_id) for pid, r in run_recipes(workspace, run_id).items()}

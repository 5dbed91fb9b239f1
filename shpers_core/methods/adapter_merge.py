"""Shared steps of the merge methods: find per-persona adapters, merge them, save the result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shpers_core.atomic import atomic_write_text
from shpers_core.errors import UserError
from shpers_core.methods.cluster_lora import ClusterParams
from shpers_core.methods.merging import MERGE_MODE_HELP, MERGE_MODES, merge_lora
from shpers_core.params import param
from shpers_core.training.adapter_types import Adapter
from shpers_core.training.adapters import check_adapter_fits


@dataclass
class MergeParams(ClusterParams):
    title = "Merge"
    merge_mode: str = param(
        "factor_average",
        "; ".join(f"{mode}: {text}" for mode, text in MERGE_MODE_HELP.items()),
        choices=MERGE_MODES,
    )
    density: float = param(0.5, "Share of weights kept by TIES and DARE.", min=0.0, max=1.0, min_exclusive=True)
    dare_seed: int = param(0, "Seed of DARE's random drop (dare_linear, dare_ties).", min=0, max=2**31 - 1)


def per_persona_adapters(ctx) -> tuple[str, dict[str, Adapter]]:
    """The per-persona LoRA run these merges start from (trained first if there is none)."""
    source = ctx.source_run("per_persona_lora")
    adapters = ctx.adapters_of(source)
    missing = [p for p in ctx.personas if p not in adapters]
    if missing:
        raise UserError(f"run {source} has no adapter for persona {missing[0]}")
    for pid in ctx.personas:
        # Checked here so a wrong shape names the source adapter, not the merge made from it.
        check_adapter_fits(adapters[pid], ctx.base.model)
    ctx.store.update_run(ctx.run_id, parent_run_id=source)
    return source, adapters


def merge_and_save(ctx, name: str, members: list[tuple[str, float]], sources: dict[str, Adapter],
                   params: MergeParams, persona_id: str | None) -> Adapter:
    """Merge the adapters of ``members`` (persona id, weight) and save the result as ``name``.

    Which adapters went in, with which weights, is written to the run's ``merges.json`` so a
    user can see what a merged adapter is made of.
    """
    inputs = [sources[pid] for pid, _ in members]
    weights = [float(w) for _, w in members]
    merged = merge_lora([a.state_dict for a in inputs], weights, params.merge_mode,
                        scalings=[a.scaling for a in inputs], density=params.density, seed=params.dare_seed)
    adapter = ctx.save_lora(name, merged.state_dict, persona_id=persona_id, rank=merged.rank,
                            lora_alpha=merged.lora_alpha, kind="adapter" if persona_id else "merged_adapter")
    _record_merge(ctx.run_dir / "merges.json", name, params.merge_mode, members,
                  Path(adapter.path).relative_to(ctx.run_dir).as_posix())
    return adapter


def _record_merge(path: Path, name: str, mode: str, members: list[tuple[str, float]], folder: str) -> None:
    merges = json.loads(path.read_text()) if path.exists() else {}
    merges[name] = {"mode": mode, "adapter": folder, "inputs": [{"persona_id": pid, "weight": float(w)} for pid, w in members]}
    atomic_write_text(path, json.dumps(merges, indent=1))

"""Runs that repeat one recipe with other training seeds, which Table 5.1 can pool into one row.

Two finished runs are replicates when everything they record but their name and training seed is
the same: method, parameters, base model, dataset, personas, and the run they build on, or a
replicate of it. Their seeds must differ, so a run repeated with its own seed stays a row of its
own. A run that does not train (a merge, a static prefix) takes the seed of the run it builds on:
`shpers study --seeds 0 1` merges each pass's own per-persona adapters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from shpers_core.store.records import RunRecord

# A run's id to its record, or None where the store no longer has it.
ParentLookup = Callable[[str], RunRecord | None]


def _no_parents(_run_id: str) -> RunRecord | None:
    return None


def _parent(run: RunRecord, parent_of: ParentLookup) -> RunRecord | None:
    return parent_of(run.parent_run_id) if run.parent_run_id else None


def effective_seed(run: RunRecord, parent_of: ParentLookup = _no_parents) -> int:
    """The training seed behind ``run``: its own if it trains, else that of the run it builds on."""
    parent = None if run.params.get("train") else _parent(run, parent_of)
    return run.seed if parent is None else effective_seed(parent, parent_of)


def replicate_key(run: RunRecord, parent_of: ParentLookup = _no_parents) -> str:
    """What two runs must share to be replicates: every recorded setting but the name and seed."""
    # The run built on is compared below through its own key, whether the job named it or not.
    params = {k: v for k, v in run.params.items() if k not in ("name", "source_run")}
    if isinstance(params.get("train"), dict):
        params["train"] = {k: v for k, v in params["train"].items() if k != "seed"}
    parent = _parent(run, parent_of)
    built_on = replicate_key(parent, parent_of) if parent is not None else run.parent_run_id
    return json.dumps([run.method, params, run.base_model, run.dataset_hash, sorted(run.personas), built_on],
                      sort_keys=True, default=str)


def replicate_groups(runs: Sequence[RunRecord], parent_of: ParentLookup = _no_parents) -> list[list[RunRecord]]:
    """``runs`` in groups of replicates, each group in seed order, groups in the order of their first run.

    Only finished runs pool; a run whose seed its group already has starts a group of its own.
    """
    groups: list[list[RunRecord]] = []
    open_groups: dict[str, list[list[RunRecord]]] = {}
    seed = {run.id: effective_seed(run, parent_of) for run in runs}
    for run in runs:
        if run.status != "finished":
            groups.append([run])
            continue
        candidates = open_groups.setdefault(replicate_key(run, parent_of), [])
        group = next((g for g in candidates if all(seed[r.id] != seed[run.id] for r in g)), None)
        if group is None:
            group = []
            candidates.append(group)
            groups.append(group)
        group.append(run)
    return [sorted(g, key=lambda r: seed[r.id]) for g in groups]

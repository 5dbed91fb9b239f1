"""Runs that repeat one recipe with other training seeds, which Table 5.1 can pool into one row.

Two finished runs are replicates when everything they record but their name and training seed is
the same: method, parameters, base model, dataset, personas and the run they build on. Their
seeds must differ, so a run repeated with its own seed stays a row of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from shpers_core.store.records import RunRecord


def replicate_key(run: RunRecord) -> str:
    """What two runs must share to be replicates: every recorded setting but the name and seed."""
    params = {k: v for k, v in run.params.items() if k != "name"}
    if isinstance(params.get("train"), dict):
        params["train"] = {k: v for k, v in params["train"].items() if k != "seed"}
    return json.dumps([run.method, params, run.base_model, run.dataset_hash, sorted(run.personas),
                       run.parent_run_id], sort_keys=True, default=str)


def replicate_groups(runs: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """``runs`` in groups of replicates, each group in seed order, groups in the order of their first run.

    Only finished runs pool; a run whose seed its group already has starts a group of its own.
    """
    groups: list[list[RunRecord]] = []
    open_groups: dict[str, list[list[RunRecord]]] = {}
    for run in runs:
        if run.status != "finished":
            groups.append([run])
            continue
        candidates = open_groups.setdefault(replicate_key(run), [])
        group = next((g for g in candidates if all(r.seed != run.seed for r in g)), None)
        if group is None:
            group = []
            candidates.append(group)
            groups.append(group)
        group.append(run)
    return [sorted(g, key=lambda r: r.seed) for g in groups]

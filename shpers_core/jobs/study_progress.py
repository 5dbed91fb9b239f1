"""How far a workspace got with a study: rows that finished, rows that stopped and can resume.

A quick study takes most of an hour (two seeds, well over one); a closed laptop or a cancelled job
should not cost the rows already done. A row counts as done when a finished run in the store has
exactly its settings (every parameter, name, personas, base model, the dtype the machine picks) on
the same data (content hash, wherever the file lies) and the same training seed. So a one-seed
study's rows are the first pass of ``--seeds 0 1`` (whose names end in " seed=0"): adding a seed
runs only the new pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shpers_core.errors import UserError
from shpers_core.evaluation.replicates import effective_seed
from shpers_core.jobs.spec import JobSpec, parameter_groups
from shpers_core.models.device import pick_device, pick_dtype

FINISHED, RESUME, NEW = "finished", "resume", "new"
CONTINUED_STATUSES = ("interrupted", "cancelled")
"""Of the store's RESUMABLE_STATUSES, those a study continues: a failed row starts again as a new run,
since whatever failed it would likely fail its resume too."""


@dataclass(frozen=True)
class StudyRow:
    """One job of a study and what the workspace has of it."""

    spec: JobSpec
    state: str
    """FINISHED (keep ``run_id``), RESUME (continue ``run_id`` from its checkpoint) or NEW."""
    run_id: str | None = None


# `study --seeds 0 1` names a row's passes "ROW seed=0", "ROW seed=1"; a one-seed study names it "ROW".
SEED_SUFFIX = re.compile(r" seed=\d+$")


def _recipe(params: dict[str, Any]) -> str:
    # Where the data file lies is not part of the recipe: its content hash is compared instead. The
    # seed is compared apart from the name: in the training settings, or through the run built on.
    # Nor is the run a row built on, which the study names as it runs (its seed is compared instead).
    kept = {k: v for k, v in params.items() if k not in ("dataset_path", "source_run")}
    kept["name"] = SEED_SUFFIX.sub("", str(kept.get("name", "")))
    return json.dumps(kept, sort_keys=True, default=str)


def _training_seeds(specs: list[JobSpec]) -> list[int | None]:
    """The training seed behind each spec: its own, or that of the trained rows before it in the study
    (a merge or prefix builds on its pass's adapters); None before any row trains."""
    seeds: list[int | None] = []
    current = None
    for spec in specs:
        if "train" in parameter_groups(spec.method):
            current = spec.train.seed
        seeds.append(current)
    return seeds


def study_progress(store, specs: list[JobSpec], dataset_hash: str) -> list[StudyRow]:
    """Each of ``specs`` (in order) with the newest stored run of exactly its recipe on ``dataset_hash``.

    A run still running in another process is refused with a :class:`UserError`: continuing the study
    beside it would train the same row twice at once.
    """
    every = store.list_runs()  # newest first
    by_id = {r.id: r for r in every}
    runs = [r for r in every if r.dataset_hash == dataset_hash]
    rows = []
    for spec, seed in zip(specs, _training_seeds(specs)):
        # A run records the dtype its base model ran in; a spec that leaves it to the machine means that one.
        chosen = spec.dtype or pick_dtype(spec.device or pick_device())
        recipe = _recipe(spec.replace(dtype=chosen).to_dict())
        same = [r for r in runs if r.method == spec.method and r.base_model == spec.base_model
                and _recipe(r.params) == recipe and _same_seed(r, seed, by_id.get)]
        done = next((r for r in same if r.status == "finished"), None)
        if done is not None:
            rows.append(StudyRow(spec, FINISHED, done.id))
            continue
        running = next((r for r in same if r.status == "running"), None)
        if running is not None:
            raise UserError(f"study row {spec.name!r} is running now as run {running.id}; "
                            "let it finish or cancel it, then continue the study")
        stopped = next((r for r in same if r.status in CONTINUED_STATUSES), None)
        rows.append(StudyRow(spec, RESUME, stopped.id) if stopped is not None else StudyRow(spec, NEW))
    return rows


def _same_seed(run, seed: int | None, parent_of) -> bool:
    """Whether a run that trains nothing but builds on another (a merge) stands on ``seed``'s adapters."""
    if run.params.get("train") or not run.parent_run_id or seed is None:
        return True  # a training run's seed is in its recipe; a base-model run has none
    return effective_seed(run, parent_of) == seed


def describe_progress(rows: list[StudyRow]) -> str:
    """E.g. "12 of 18 rows finished before, 1 stopped and can resume"; empty when nothing was done."""
    done = sum(r.state == FINISHED for r in rows)
    stopped = sum(r.state == RESUME for r in rows)
    if not done and not stopped:
        return ""
    parts = [f"{done} of {len(rows)} rows finished before"] if done else []
    if stopped:
        parts.append(f"{stopped} stopped and can resume from {'its' if stopped == 1 else 'their'} checkpoint")
    return ", ".join(parts)

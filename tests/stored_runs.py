"""Finished runs written straight into a run store, with per-persona scores chosen by the test.

For tests of what is read back (tables, comparisons): the store holds what an evaluation would
have written, without the minutes a real evaluation takes.
"""

from __future__ import annotations

import numpy as np

from shpers_core.evaluation.stats import describe
from shpers_core.jobs.spec import parameter_groups

SUBSETS = ("all", "persona_dependent", "other")


def add_scored_run(store, method: str, scores: dict[str, float], *, base_model: str = "tiny-qwen2",
                   dataset_hash: str = "d1", name: str = "", eval_params: dict | None = None,
                   dependent_shift: float = 0.0, seed: int = 0, train_params: dict | None = None) -> str:
    """A finished run whose embedding similarity per persona is ``scores`` (persona-dependent turns
    score ``dependent_shift`` higher, other turns the same as all), trained with ``seed``."""
    # A method without training settings stores them as {}, as the runner does.
    trains = "train" in parameter_groups(method)
    params = {"method": method, "eval": dict(eval_params or {}),
              "train": {**(train_params or {}), "seed": seed} if trains else {}, "name": name}
    rid = store.create_run(method, params, base_model, dataset_hash, list(scores), name=name, seed=seed,
                           dataset_path="data/dialogues.jsonl")
    store.start_run(rid)
    by_subset = {"all": scores, "persona_dependent": {p: v + dependent_shift for p, v in scores.items()},
                 "other": scores}
    for subset, values in by_subset.items():
        store.add_persona_scores(rid, [(p, "embedding_similarity", subset, v) for p, v in values.items()])
        d = describe(values)
        store.set_metrics(rid, {"embedding_similarity": d["mean"], "embedding_similarity_std": d["std"],
                                "embedding_similarity_min": d["min"], "embedding_similarity_max": d["max"]},
                          subset=subset)
    store.finish_run(rid, duration_s=1.0)
    return rid


def personas(n: int) -> list[str]:
    return [f"persona_{i:03d}" for i in range(n)]


def spread(n: int, centre: float, seed: int, width: float = 0.05) -> dict[str, float]:
    """``n`` personas' scores around ``centre``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return dict(zip(personas(n), (centre + rng.uniform(-width, width, n)).tolist()))

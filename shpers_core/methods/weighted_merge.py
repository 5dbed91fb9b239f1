"""Weighted cluster merge (study 4.5): per cluster, merge its personas' adapters with weight
validation score x centrality; every persona of the cluster uses the merged adapter.

The validation score of a per-persona adapter is exp(-validation loss), the mean per-token
likelihood of its validation dialogues: it needs no generation and orders adapters as the loss does.
"""

from __future__ import annotations

import numpy as np

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.adapter_merge import MergeParams, merge_and_save, per_persona_adapters
from shpers_core.methods.base import MethodSpec
from shpers_core.methods.cluster_lora import cluster
from shpers_core.methods.merging import weighted_merge_weights


def run(ctx, params: MergeParams) -> EvalPlan:
    source, sources = per_persona_adapters(ctx)
    val = ctx.store.persona_scores(source, metric="val_score", subset="validation")
    scores = np.array([val.get(pid, 1.0) for pid in ctx.personas])
    labels = cluster(ctx, params)
    vectors = ctx.persona_vectors(params.features)
    plan = weighted_merge_weights(scores, vectors, labels)
    merged = {
        c: merge_and_save(ctx, f"cluster_{c}", [(ctx.personas[j], w) for j, w in members], sources, params,
                          persona_id=None)
        for c, members in plan.items()
    }
    return EvalPlan(adapters={pid: merged[int(labels[i])] for i, pid in enumerate(ctx.personas)})


METHOD = MethodSpec(
    name="weighted_merge",
    title="Weighted merge",
    summary="Per cluster, merge per-persona adapters weighted by validation score x centrality.",
    params=MergeParams,
    run=run,
    trains=False,
    shows_lora_form=False,
    requires=("per_persona_lora",),
)

"""Sparse mixture of experts (study 4.4): each persona gets the similarity-weighted merge of the
K most similar per-persona adapters in its cluster."""

from __future__ import annotations

from dataclasses import dataclass

from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.adapter_merge import MergeParams, merge_and_save, per_persona_adapters
from shpers_core.methods.base import MethodSpec
from shpers_core.methods.cluster_lora import cluster
from shpers_core.methods.merging import sparse_moe_weights
from shpers_core.params import param


@dataclass
class SparseMoeParams(MergeParams):
    title = "Sparse MoE"
    experts: int = param(5, "Per-persona adapters merged for each persona (K), the persona's own included.", min=1)


def run(ctx, params: SparseMoeParams) -> EvalPlan:
    _, sources = per_persona_adapters(ctx)
    labels = cluster(ctx, params)
    vectors = ctx.persona_vectors(params.features)
    plan = sparse_moe_weights(vectors, labels, k=params.experts)
    adapters = {}
    for i, pid in enumerate(ctx.personas):
        adapters[pid] = merge_and_save(ctx, pid, [(ctx.personas[j], w) for j, w in plan[i]], sources, params,
                                       persona_id=pid)
        ctx.reporter.progress("merging", i + 1, len(ctx.personas))
    return EvalPlan(adapters=adapters)


METHOD = MethodSpec(
    name="sparse_moe",
    title="Sparse MoE",
    summary="Per persona, merge the K most similar per-persona adapters in its cluster, weighted by similarity.",
    params=SparseMoeParams,
    run=run,
    trains=False,
    shows_lora_form=False,
    requires=("per_persona_lora",),
)

"""Cluster LoRA (study 4.3): k-means on persona embeddings, one adapter per cluster."""

from __future__ import annotations

from dataclasses import dataclass

from shpers_core.distributed.data_parallel import fit_data_parallel
from shpers_core.errors import UserError
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec
from shpers_core.methods.clustering import cluster_personas
from shpers_core.params import Params, param

FEATURES = ("description", "behaviour")


@dataclass
class ClusterParams(Params):
    """How personas are clustered; soft prompts (scope cluster) and the merges share these fields."""

    title = "Clusters"
    k: int = param(5, "Number of k-means clusters of personas.", min=2)
    features: str = param("description", "Cluster on the character description (the study's choice) or on "
                          "embeddings of each persona's own training dialogues.", choices=FEATURES)
    cluster_seed: int = param(0, "Seed of k-means.", min=0, max=2**31 - 1)


    def clusters(self) -> bool:
        """Whether these settings cluster the personas at all."""
        return True

    def check_persona_count(self, method: str, count: int) -> None:
        # Checked before the run is recorded, not after a source run has been trained.
        if self.clusters() and self.k > count:
            raise UserError(f"{method}: k={self.k} is larger than the {count} selected personas; "
                            "lower k or select more personas")


@dataclass
class ClusterLoraParams(ClusterParams):
    """Cluster LoRA's own settings beside the shared clustering ones (merges and soft prompts train no LoRA)."""

    engine: str = param("batched", "batched: the clusters' adapters train together in one pass over the base "
                        "model, each exactly as alone; sequential: one after another.", choices=("batched", "sequential"))
    workers: int = param(1, "Train each cluster's adapter data-parallel on this many Ray Train workers (1: in this "
                            "process), as unified_lora's workers: train.batch_size stays the global batch and the "
                            "adapters equal the one-process run's.", min=1, max=1024)


def cluster(ctx, params: ClusterParams) -> list[int]:
    """Cluster the selected personas, record the silhouette and each persona's cluster."""
    if params.k > len(ctx.personas):
        raise UserError(f"k={params.k} is larger than the {len(ctx.personas)} selected personas")
    vectors = ctx.persona_vectors(params.features)
    clustering = cluster_personas(vectors, k=params.k, seed=params.cluster_seed)
    ctx.record_metric("silhouette", clustering.silhouette)
    labels = [int(x) for x in clustering.labels]
    ctx.store.add_persona_scores(ctx.run_id, [(pid, "cluster", "info", c) for pid, c in zip(ctx.personas, labels)])
    ctx.reporter.log(f"{params.k} clusters on {params.features}: sizes "
                     f"{[labels.count(c) for c in range(params.k)]}, silhouette {clustering.silhouette:.3f}")
    return labels


def run(ctx, params: ClusterLoraParams) -> EvalPlan:
    labels = cluster(ctx, params)
    members = {f"cluster_{c}": [pid for pid, lab in zip(ctx.personas, labels) if lab == c] for c in sorted(set(labels))}
    adapters = {name: ctx.saved_adapter(name) for name in members}
    todo = [name for name, adapter in adapters.items() if adapter is None]
    if todo and (params.workers > 1 or params.engine == "sequential"):
        for name in todo:
            train, val = ctx.pooled_examples(members[name], "train"), ctx.pooled_examples(members[name], "val")
            if params.workers > 1:
                result = fit_data_parallel(ctx, train, val, name, params.workers, series=f"{name}/train")
            else:
                result = ctx.fit_lora(train, val, name=name, series=f"{name}/train")
            adapters[name] = ctx.save_lora(name, result.state_dict, kind="cluster_adapter")
    elif todo:
        batch = ctx.batch_to_train(list(members), todo)
        result = ctx.fit_lora_batched({name: ctx.pooled_examples(members[name], "train") for name in batch},
                                      {name: ctx.pooled_examples(members[name], "val") for name in batch})
        for name in todo:
            adapters[name] = ctx.save_lora(name, result.state_dicts[name], kind="cluster_adapter")
    return EvalPlan(adapters={pid: adapters[name] for name, pids in members.items() for pid in pids})


METHOD = MethodSpec(
    name="cluster_lora",
    title="Cluster LoRA",
    summary="k-means on persona embeddings; one LoRA adapter per cluster on its pooled dialogues.",
    params=ClusterLoraParams,
    run=run,
    # Appendix A, "Cluster LoRA (optimized)".
    train_defaults={"learning_rate": 2e-4, "num_epochs": 5, "batch_size": 2},
)

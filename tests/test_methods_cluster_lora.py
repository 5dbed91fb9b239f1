"""Cluster LoRA trains its clusters' adapters together, each as if alone, and resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore
from shpers_core.training.adapters import load_lora_adapter
from shpers_core.workspace import Workspace

# float32 and no dropout: the two engines then differ only by the order of float32 sums.
SETTINGS = {"k": 2, "num_epochs": 2, "batch_size": 2, "max_length": 128, "max_test_dialogues": 1,
            "max_new_tokens": 4, "lora_dropout": 0.0}


def cluster_spec(**overrides):
    return build_spec("cluster_lora", {**SETTINGS, **overrides}, base_model="tiny-qwen2", device="cpu",
                      dtype="float32")


def cluster_adapters(ws: Workspace, run_id: str) -> dict[str, dict[str, torch.Tensor]]:
    with RunStore(ws.db_path) as store:
        artefacts = store.artefacts(run_id, kind="cluster_adapter")
    return {Path(a.path).name.split("-")[0]: load_lora_adapter(a.path).state_dict for a in artefacts}


def assert_same_adapters(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            torch.testing.assert_close(a[name][key], b[name][key], atol=atol, rtol=1e-4, msg=f"{name} {key}")


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    # Five personas in two clusters: the clusters differ in size, so one adapter runs out of steps first.
    write_jsonl(generate_dataset(5, 6, seed=0), ws.dataset_path)
    return ws


def test_batched_cluster_adapters_equal_the_ones_trained_one_after_another(workspace):
    batched = run_job(cluster_spec(), workspace, CollectingReporter())
    reporter = CollectingReporter()
    sequential = run_job(cluster_spec(engine="sequential"), workspace, reporter)
    one, other = cluster_adapters(workspace, batched), cluster_adapters(workspace, sequential)
    assert sorted(one) == ["cluster_0", "cluster_1"]
    assert_same_adapters(one, other)
    with RunStore(workspace.db_path) as store:
        curves, alone = store.curves(batched), store.curves(sequential)
        labels = list(store.persona_scores(batched, metric="cluster", subset="info").values())
        assert store.metrics(batched, subset="all") == pytest.approx(store.metrics(sequential, subset="all"), abs=1e-4)
    assert {"cluster_0/train", "cluster_1/train"} <= set(curves) & set(alone), "each cluster's own loss curve"
    assert "train" in curves and "train" not in alone, "one pass: the batched trainer's mean curve over the clusters"
    assert labels.count(0) != labels.count(1), "equal clusters would not test adapters that finish apart"


def test_a_cancelled_batched_cluster_run_resumes_to_the_uninterrupted_adapters(workspace):
    dropout = {"lora_dropout": 0.1}  # a resume must restore the random state dropout draws from
    reference = cluster_adapters(workspace, run_job(cluster_spec(**dropout), workspace, CollectingReporter()))
    steps: list[int] = []
    reporter = CollectingReporter(should_stop=lambda: len(steps) >= 3)
    reporter.add_sink(lambda e: steps.append(e.step) if e.kind == "step" and e.series == "train" else None)
    with pytest.raises(JobCancelled):
        run_job(cluster_spec(**dropout), workspace, reporter)
    run_id = reporter.of_kind("cancelled")[0].run_id
    assert cluster_adapters(workspace, run_id) == {}, "cancelled before any adapter was saved"
    resumed = CollectingReporter()
    run_job(cluster_spec(**dropout), workspace, resumed, run_id=run_id)
    assert any("resumed" in e.message for e in resumed.of_kind("log")), [e.message for e in resumed.of_kind("log")]
    assert_same_adapters(cluster_adapters(workspace, run_id), reference, atol=1e-6)

"""Every study method end to end through the CLI and the job runner, on the tiny model.

One module fixture runs ``shpers study --preset smoke --model tiny-qwen2`` on a small
generated dataset; the tests then read what a user would read: the printed table, the store,
the adapter folders.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch

from shpers_core.cli.main import main
from shpers_core.jobs.study import STUDY_STEPS
from shpers_core.store import RunStore
from shpers_core.training.adapters import load_lora_adapter

METRICS = ("embedding_similarity", "device_precision", "parameter_f1", "numerical_precision")


@dataclass
class Study:
    root: Path
    rc: int
    out: str
    markdown: str
    csv: str
    report: str

    def store(self) -> RunStore:
        return RunStore(self.root / "shpers.sqlite")

    def runs_by_label(self) -> dict:
        with self.store() as store:
            return {r.name: r for r in store.list_runs()}


def shpers(root: Path, *argv: str) -> tuple[int, str]:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(["--workspace", str(root), *argv])
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def study(models_cache, tmp_path_factory) -> Study:
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.workspace import Workspace

    root = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        write_jsonl(generate_dataset(6, 9, seed=1), Workspace.open(root).dataset_path)
        md, csv, report = root / "table.md", root / "table.csv", root / "report.md"
        rc, out = shpers(root, "study", "--preset", "smoke", "--model", "tiny-qwen2", "-q",
                         "--markdown", str(md), "--csv", str(csv), "--report", str(report))
    return Study(root, rc, out, *(f.read_text() if f.exists() else "" for f in (md, csv, report)))


def test_study_prints_a_row_for_every_method_and_variant(study):
    assert study.rc == 0
    for label, _, _ in STUDY_STEPS:
        assert f"| {label} |" in study.out
    assert study.markdown.strip() in study.out
    assert len(study.csv.strip().splitlines()) == len(STUDY_STEPS) + 1
    # The report: the answers, then the same table, then the forest plots.
    assert study.report.index("- **RQ1**") < study.report.index(study.markdown.strip().splitlines()[0])
    assert study.report.count("```") == 4


def test_every_run_finished_with_all_four_metrics_for_every_persona(study):
    runs = study.runs_by_label()
    with study.store() as store:
        for label, method, _ in STUDY_STEPS:
            run = runs[label]
            assert (run.method, run.status) == (method, "finished"), label
            assert len(run.personas) == 4
            for metric in METRICS:
                scores = store.persona_scores(run.id, metric=metric)
                assert set(scores) == set(run.personas), (label, metric)
                assert all(0.0 <= v <= 1.0 for v in scores.values())
            assert len(store.predictions(run.id)) > 0


def test_a_study_over_two_seeds_repeats_the_trained_rows_and_pools_them(models_cache, tmp_path, monkeypatch):
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.workspace import Workspace

    monkeypatch.setenv("SHPERS_CACHE", str(models_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_jsonl(generate_dataset(6, 9, seed=1), Workspace.open(tmp_path).dataset_path)
    rc, out = shpers(tmp_path, "study", "--preset", "smoke", "--model", "tiny-qwen2", "-q", "--seeds", "0", "1")
    assert rc == 0
    with RunStore(tmp_path / "shpers.sqlite") as store:
        runs = {r.name: r for r in store.list_runs()}
    assert runs["Unified LoRA seed=1"].seed == 1 and runs["Unified LoRA seed=0"].seed == 0
    # The second pass's prefix builds on the second pass's unified adapter.
    assert runs["Unified + static text prefix seed=1"].parent_run_id == runs["Unified LoRA seed=1"].id
    assert "Base model (no adaptation) seed=1" not in runs
    table = {line.split(" | ")[2]: line.split(" | ")[3] for line in out.splitlines() if line.startswith("| tiny-qwen2")}
    assert len(table) == len(STUDY_STEPS)  # one row per study row, pooled over the seeds
    assert table["Unified LoRA"].startswith("0, 1 (± ") and table["Unified + static text prefix"].startswith("0, 1 (± ")
    assert table["Base model (no adaptation)"] == "0"


def test_table_numbers_are_read_back_from_the_store(study):
    unified = study.runs_by_label()["Unified LoRA"]
    with sqlite3.connect(study.root / "shpers.sqlite") as db:
        db.execute("UPDATE metrics SET value = 0.4321 WHERE run_id = ? AND subset = 'all' AND name = 'parameter_f1'",
                   (unified.id,))
    rc, out = shpers(study.root, "runs", "export", unified.id)
    assert rc == 0
    assert "43.21" in out


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)], ids=["fp32", "bf16"])
def test_persona_adapter_loads_in_plain_peft_with_the_tools_logits(study, tiny_base, dtype, tol):
    from peft import PeftModel

    from shpers_core.training.config import LoraParams
    from shpers_core.training.multi import MultiLoraModel

    run = study.runs_by_label()["Per-persona LoRA"]
    with study.store() as store:
        arts = [a for a in store.artefacts(run.id, kind="adapter") if a.persona_id]
    assert sorted(a.persona_id for a in arts) == sorted(run.personas)
    folder = Path(arts[0].path)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    base_model = copy.deepcopy(tiny_base.model).to(dtype)
    with torch.no_grad():
        base_logits = base_model(ids).logits
        peft_logits = PeftModel.from_pretrained(copy.deepcopy(base_model), folder).eval()(ids).logits
        config = json.loads((folder / "adapter_config.json").read_text())
        multi = MultiLoraModel(copy.deepcopy(base_model).eval(), 2,
                               LoraParams(rank=config["r"], lora_alpha=config["lora_alpha"], lora_dropout=0.0,
                                          target_modules=tuple(config["target_modules"])))
        multi.load_adapter(1, load_lora_adapter(folder).state_dict)
        with multi.use_slots([1]):
            tool_logits = multi.model(ids).logits
    torch.testing.assert_close(tool_logits, peft_logits, atol=tol, rtol=tol)
    assert not torch.allclose(peft_logits, base_logits, atol=1e-6), "the trained adapter changes nothing"


def _updates(folder: Path) -> dict[str, torch.Tensor]:
    """Each module's weight update scale·B·A."""
    adapter = load_lora_adapter(folder)
    out = {}
    for key, a in adapter.state_dict.items():
        if ".lora_A." in key:
            b = adapter.state_dict[key.replace(".lora_A.", ".lora_B.")]
            out[key.split(".lora_A.")[0]] = adapter.scaling * (b.double() @ a.double())
    return out


def _merge_check(study: Study, label: str) -> list[float]:
    """Relative distance of each merged adapter's update from the weighted sum of its inputs' updates."""
    runs = study.runs_by_label()
    merged_run, source = runs[label], runs["Per-persona LoRA"]
    assert merged_run.parent_run_id == source.id
    with study.store() as store:
        inputs = {a.persona_id: Path(a.path) for a in store.artefacts(source.id, kind="adapter")}
    merges = json.loads((study.root / "runs" / merged_run.id / "merges.json").read_text())
    gaps = []
    for merge in merges.values():
        weights = [m["weight"] for m in merge["inputs"]]
        assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0
        merged = _updates(study.root / "runs" / merged_run.id / merge["adapter"])
        parts = [(_updates(inputs[m["persona_id"]]), m["weight"]) for m in merge["inputs"]]
        for module, delta in merged.items():
            expected = sum(w * upd[module] for upd, w in parts)
            gaps.append(float((delta - expected).norm() / expected.norm()))
    return gaps


def test_exact_merge_update_is_the_weighted_sum_of_its_inputs_and_factor_average_is_not(study):
    assert max(_merge_check(study, "Weighted merge (exact)")) < 1e-5
    assert max(_merge_check(study, "Sparse MoE (exact)")) < 1e-5
    # Averaging A and B separately adds cross terms wherever two or more adapters are merged.
    assert max(_merge_check(study, "Sparse MoE (factor average)")) > 1e-3


def test_cluster_runs_record_their_features_and_silhouette(study):
    runs = study.runs_by_label()
    with study.store() as store:
        for features in ("description", "behaviour"):
            run = runs[f"Cluster LoRA ({features})"]
            assert run.params["method_params"]["features"] == features
            info = store.metrics(run.id, subset="info")
            assert -1.0 <= info["silhouette"] <= 1.0
            assert len(store.artefacts(run.id, kind="cluster_adapter")) == 2
            membership = store.persona_scores(run.id, metric="cluster", subset="info")
            assert set(membership) == set(run.personas) and set(membership.values()) == {0, 1}


def test_prefix_and_merge_runs_name_the_run_they_build_on(study):
    runs = study.runs_by_label()
    for label in ("Unified + static text prefix", "Unified + learned persona prefix", "Unified + learned cluster prefix"):
        assert runs[label].parent_run_id == runs["Unified LoRA"].id, label


def test_compare_reports_paired_statistics(study):
    runs = study.runs_by_label()
    rc, out = shpers(study.root, "runs", "compare", runs["Unified LoRA"].id, runs["Per-persona LoRA"].id,
                     "--metric", "device_precision")
    assert rc == 0
    for words in ("95% CI", "Wilcoxon p", "W/T/L", "n = 4"):
        assert words in out, out
    assert any(verdict in out for verdict in ("beats", "No real difference shown", "Borderline")), out


def test_run_list_show_and_delete_from_the_command_line(study):
    rc, out = shpers(study.root, "run", "unified_lora", "--model", "tiny-qwen2", "--personas",
                     *study.runs_by_label()["Unified LoRA"].personas[:2], "-q",
                     "--param", "num_epochs=1", "--param", "max_test_dialogues=1", "--param", "max_new_tokens=4")
    assert rc == 0
    run_id = out.strip().splitlines()[-1]
    rc, listed = shpers(study.root, "runs", "list", "--method", "unified_lora")
    assert run_id in listed
    rc, shown = shpers(study.root, "runs", "show", run_id)
    assert rc == 0 and "num_epochs" in shown and "embedding_similarity" in shown
    folder = study.root / "runs" / run_id
    assert folder.exists()
    assert shpers(study.root, "runs", "delete", run_id, "--yes")[0] == 0
    assert not folder.exists()
    with study.store() as store:
        assert run_id not in {r.id for r in store.list_runs()}


def test_retrieval_shows_only_training_exchanges_most_similar_first():
    from shpers_core.data.schema import Message
    from shpers_core.methods.retrieval import retriever

    words = ["lights", "music", "heating", "blinds"]

    def embed(texts):
        return np.array([[float(w in t) for w in words] for t in texts]) + 1e-3

    @dataclass
    class FakeDialogue:
        pairs: list

        def turns(self):
            return [([Message("user", u)], Message("assistant", a)) for u, a in self.pairs]

    train = {"p": [FakeDialogue([("dim the lights", "Lounge lights 30%."), ("play music", "Jazz on.")]),
                   FakeDialogue([("warm up the heating", "Heating 21°C.")])]}
    system_for_turn = retriever(train, embed, 1, None)
    prompt = system_for_turn("p", [Message("user", "turn the heating up")])
    assert "Heating 21°C." in prompt
    assert "Jazz on." not in prompt and "Lounge lights" not in prompt


def test_runs_record_dtype_speed_and_padding(study):
    from shpers_core.models import pick_dtype

    runs = study.runs_by_label()
    with study.store() as store:
        for label in ("Unified LoRA", "Per-persona LoRA"):
            run = runs[label]
            assert run.params["dtype"] == pick_dtype("cpu")
            info = store.metrics(run.id, subset="info")
            assert info["train_tokens_per_s"] > 0 and info["train_tokens"] > 0
            assert 0.0 <= info["train_padding_share"] < 1.0
            assert info["eval_turns_per_s"] > 0 and info["eval_turns_truncated"] == 0
        assert "train_tokens_per_s" not in store.metrics(runs["Base model (no adaptation)"].id, subset="info")

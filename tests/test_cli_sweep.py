"""``shpers sweep``: one run per value, named as the app names them; bad sweeps refused before any run."""

from __future__ import annotations

import pytest
from cli_workspace import make_workspace, shpers

from shpers_core.jobs.spec import flat_defaults
from shpers_core.jobs.sweep import sweep_specs
from shpers_core.params import ParamError
from shpers_core.store import RunStore

FAST = ["--param", "train.num_epochs=1", "--param", "eval.max_test_dialogues=1", "--param", "eval.max_new_tokens=4",
        "--param", "eval.max_train_dialogues=4", "--param", "train.warmup_ratio=0"]


def test_sweep_specs_are_typed_named_and_keep_the_other_parameters():
    specs = sweep_specs("unified_lora", "learning_rate", ["1e-4", "1e-3"], {"train.num_epochs": "2"},
                        name="lr", base_model="tiny-qwen2")
    assert [s.train.learning_rate for s in specs] == [1e-4, 1e-3]
    assert [s.train.num_epochs for s in specs] == [2, 2]
    assert [s.name for s in specs] == ["lr learning_rate=0.0001", "lr learning_rate=0.001"]
    # The swept value wins over the same key among the others (the app passes every form field).
    (spec,) = sweep_specs("unified_lora", "lora.rank", [4], {"lora.rank": 8}, base_model="tiny-qwen2")
    assert spec.lora.rank == 4 and spec.name == "unified_lora rank=4"


def test_a_seeded_sweep_runs_every_value_once_per_seed_a_pass_per_seed():
    specs = sweep_specs("unified_lora", "lora.rank", [4, 8], base_model="tiny-qwen2", seeds=[0, 1])
    assert [(s.lora.rank, s.train.seed) for s in specs] == [(4, 0), (8, 0), (4, 1), (8, 1)]
    assert specs[3].name == "unified_lora rank=8 seed=1"
    (one,) = sweep_specs("unified_lora", "lora.rank", [4], base_model="tiny-qwen2", seeds=[7])
    assert (one.train.seed, one.name) == (7, "unified_lora rank=4 seed=7")
    with pytest.raises(ParamError, match="trains nothing"):
        sweep_specs("retrieval", "examples", [1, 2], base_model="tiny-qwen2", seeds=[0, 1])
    with pytest.raises(ParamError, match="one seed per value already"):
        sweep_specs("unified_lora", "train.seed", [1, 2], base_model="tiny-qwen2", seeds=[0, 1])


@pytest.mark.parametrize("key, values, message", [
    ("train.no_such", ["1"], "cannot sweep 'train.no_such'"),
    ("learning_rate", ["fast"], "'fast' is not a valid float"),
    ("learning_rate", ["1e-4", "0.0001"], "repeats 0.0001"),
    ("learning_rate", [], "at least one value"),
])
def test_a_bad_sweep_is_refused_naming_what_is_wrong(key, values, message):
    with pytest.raises(ParamError, match=message):
        sweep_specs("unified_lora", key, values, base_model="tiny-qwen2")


def test_a_bad_sweep_on_the_command_line_is_one_line_and_records_nothing(tmp_path):
    root = make_workspace(tmp_path, personas=2)
    rc, _, err = shpers(root, "sweep", "unified_lora", "train.learning_rate", "1e-4", "oops", "--model", "tiny-qwen2")
    assert rc == 2 and err.count("\n") == 1 and "'oops' is not a valid float" in err
    with RunStore(root / "shpers.sqlite") as store:
        assert store.list_runs() == []


def test_a_local_sweep_stores_one_finished_run_per_value(tmp_path, shpers_cache):
    root = make_workspace(tmp_path, personas=2)
    rc, out, err = shpers(root, "sweep", "unified_lora", "lora.rank", "2", "4", "--model", "tiny-qwen2", "-q", *FAST)
    assert rc == 0, err
    with RunStore(root / "shpers.sqlite") as store:
        runs = {r.name: r for r in store.list_runs()}
        assert set(runs) == {"unified_lora rank=2", "unified_lora rank=4"}
        assert all(r.status == "finished" for r in runs.values())
        assert [store.get_run(rid).params["lora"]["rank"] for rid in out.split()] == [2, 4]
    # The sweep's curve: both values, their final validation losses, the default's rank as the reference.
    rc, out, err = shpers(root, "runs", "effect", *out.split(), "--format", "csv")
    assert rc == 0, err
    rows = out.splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["2", "4"]
    assert all(float(r.split(",")[6]) > 0 for r in rows)  # val_loss
    # A sweep around a stored run: its settings (rank 4, the fast evaluation) in every run, one value changed.
    rank4 = next(r.id for r in runs.values() if r.params["lora"]["rank"] == 4)
    rc, out, err = shpers(root, "sweep", "--like", rank4, "train.learning_rate", "1e-3")
    assert rc == 0, err
    # Its curve goes through the run it sweeps around, here at the default rate: the reference.
    default = flat_defaults("unified_lora")["train.learning_rate"]
    assert f"Reference: train.learning_rate = {default:g} (the default)" in out
    assert "| 0.001 | unified_lora rank=4 learning_rate=0.001 |" in out
    with RunStore(root / "shpers.sqlite") as store:
        new = store.get_run(out.split()[-1])
        old = store.get_run(rank4)
    assert new.name == "unified_lora rank=4 learning_rate=0.001" and new.params["train"]["learning_rate"] == 1e-3
    assert {k: v for k, v in new.params["train"].items() if k != "learning_rate"} == {
        k: v for k, v in old.params["train"].items() if k != "learning_rate"}
    assert new.params["lora"] == old.params["lora"] and new.params["eval"] == old.params["eval"]
    assert new.personas == old.personas and new.base_model == old.base_model
    # With another setting changed too, the run it sweeps around is no point of the curve: it differs in two.
    rc, out, err = shpers(root, "sweep", "--like", rank4, "train.learning_rate", "2e-3", "3e-3",
                          "--param", "eval.max_new_tokens=3")
    assert rc == 0, err
    assert "(the best mean)" in out and f"| {default:g} |" not in out
    # Another method than the run's, or no value: one line, nothing run.
    rc, _, err = shpers(root, "sweep", "--like", rank4, "base_model", "lora.rank", "2")
    assert rc == 2 and "is unified_lora, not base_model" in err
    rc, _, err = shpers(root, "sweep", "--like", rank4, "lora.rank")
    assert rc == 2 and "at least one value" in err
    # Seeds: the new rate once per seed, pooled into one point; the run swept around (seed 0) is the reference.
    rc, out, err = shpers(root, "sweep", "--like", rank4, "train.learning_rate", "1e-3", "--seeds", "1", "2")
    assert rc == 0, err
    assert "2 runs, about " in out + err  # timed by the runs before it
    assert "| 0.001 | 2 runs pooled | 2 |" in out and f"| {default:g} | unified_lora rank=4 |" in out
    with RunStore(root / "shpers.sqlite") as store:
        seeded = [store.get_run(r) for r in out.split()[-2:]]
        assert [(r.name, r.params["train"]["seed"]) for r in seeded] == [
            ("unified_lora rank=4 learning_rate=0.001 seed=1", 1), ("unified_lora rank=4 learning_rate=0.001 seed=2", 2)]
        assert len(store.list_runs()) == 7

"""Table 5.1 pools runs that repeat one recipe with other training seeds, when asked to."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy.stats import wilcoxon
from stored_runs import add_scored_run, spread

from shpers_core.cli.main import main
from shpers_core.evaluation.table import HEADERS, row_cells, study_rows, to_csv
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

N = 12


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def _three_seeds(store, method="unified_lora", centre=0.6, **kwargs):
    scores = [spread(N, centre, seed) for seed in (11, 12, 13)]
    ids = [add_scored_run(store, method, sc, seed=seed, name=f"{method} seed {seed}", **kwargs)
           for seed, sc in enumerate(scores)]
    return ids, scores


def test_a_seed_sweep_is_one_row_scored_by_each_personas_mean_over_the_seeds(store):
    ids, scores = _three_seeds(store)
    base = spread(N, 0.45, 4)
    add_scored_run(store, "base_model", base, name="base")
    pooled = {r.method: r for r in study_rows(store, pool_seeds=True)}
    unified = pooled["unified_lora"]
    assert set(pooled) == {"unified_lora", "base_model"}
    assert unified.seeds == (0, 1, 2) and unified.run_id.split(",") == ids
    means = {p: np.mean([sc[p] for sc in scores]) for p in scores[0]}
    assert unified.mean == pytest.approx(np.mean(list(means.values())))
    assert unified.seed_std == pytest.approx(np.std([np.mean(list(sc.values())) for sc in scores], ddof=1))
    assert unified.run_name == "unified_lora seed 0"
    cells = dict(zip(HEADERS, row_cells(unified)))
    assert cells["Seeds"] == f"0, 1, 2 (± {unified.seed_std * 100:.2f})" and cells["Run"] == "unified_lora seed 0"
    assert dict(zip(HEADERS, row_cells(pooled["base_model"])))["Seeds"] == "0"
    # The base model is compared with the seeds' mean, persona by persona.
    expected_p = wilcoxon([base[p] - means[p] for p in sorted(base)]).pvalue
    assert pooled["base_model"].p_holm == pytest.approx(expected_p)
    assert pooled["base_model"].diff_vs_unified == pytest.approx(np.mean(list(base.values())) - unified.mean)
    record = next(csv.DictReader(io.StringIO(to_csv([unified]))))
    assert record["seeds"] == "0 1 2" and float(record["seed_std"]) == pytest.approx(unified.seed_std)
    # Unpooled, every run is its own row, as the Results list shows them.
    assert len(study_rows(store)) == 4


def test_a_sweep_over_the_seed_is_named_without_it(tmp_path, capsys):
    from shpers_core.jobs.sweep import sweep_specs

    names = [spec.name for spec in sweep_specs("unified_lora", "train.seed", ["0", "1"])]
    with RunStore(tmp_path / "runs.sqlite") as store:
        for seed, name in enumerate(names):
            add_scored_run(store, "unified_lora", spread(N, 0.6, seed), seed=seed, name=name)
        (row,) = study_rows(store, pool_seeds=True)
    assert names == ["unified_lora seed=0", "unified_lora seed=1"] and row.run_name == "unified_lora"


def test_runs_that_differ_in_more_than_the_seed_stay_apart(store):
    add_scored_run(store, "unified_lora", spread(N, 0.6, 1), seed=0, name="a")
    add_scored_run(store, "unified_lora", spread(N, 0.6, 2), seed=1, name="b", train_params={"learning_rate": 1e-3})
    add_scored_run(store, "unified_lora", spread(N, 0.6, 3), seed=0, name="c")  # a again, with a's seed
    other_model = add_scored_run(store, "unified_lora", spread(N, 0.6, 4), seed=1, name="d", base_model="smollm2")
    running = store.create_run("unified_lora", {"method": "unified_lora", "train": {"seed": 2}, "eval": {}},
                               "tiny-qwen2", "d1", list(spread(N, 0, 0)), seed=2, name="e")
    rows = study_rows(store, pool_seeds=True)
    assert sorted(r.run_name for r in rows) == ["a", "b", "c", "d", "e"]
    assert {r.run_id for r in rows} >= {other_model, running}


def test_the_cli_pools_seeds_when_asked(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        _three_seeds(store)
        add_scored_run(store, "base_model", spread(N, 0.45, 4), name="base")
    for flags, unified_rows in (([], 3), (["--pool-seeds"], 1)):
        capsys.readouterr()
        assert main(["--workspace", str(ws.root), "runs", "export", *flags]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if "| unified_lora |" in line]
        assert len(lines) == unified_rows
    assert "| 0, 1, 2 (± " in lines[0]


def test_a_merge_takes_the_seed_of_the_run_it_builds_on(store):
    units, merges = [], []
    for seed in (0, 1):
        unified = add_scored_run(store, "unified_lora", spread(N, 0.6, seed), seed=seed, name=f"u seed={seed}")
        units.append(unified)
        prefix = add_scored_run(store, "static_prefix", spread(N, 0.58, 10 + seed), name=f"prefix seed={seed}")
        store.update_run(prefix, parent_run_id=unified)  # as the method records its source
        merges.append(prefix)
    rows = {r.method: r for r in study_rows(store, pool_seeds=True)}
    assert rows["static_prefix"].seeds == (0, 1) and rows["static_prefix"].run_name == "prefix"
    assert rows["static_prefix"].run_id.split(",") == merges
    # Built on runs that are not replicates of each other, two prefixes are two rows.
    store.update_run(merges[1], parent_run_id=add_scored_run(store, "unified_lora", spread(N, 0.6, 5), seed=1,
                                                               train_params={"learning_rate": 1e-3}))
    assert sum(r.method == "static_prefix" for r in study_rows(store, pool_seeds=True)) == 2

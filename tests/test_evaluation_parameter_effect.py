"""A score against the one parameter runs differ in: a sweep's curve, paired with the default's point."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy.stats import wilcoxon
from stored_runs import add_scored_run, spread

from shpers_core.cli.main import main
from shpers_core.evaluation.parameter_effect import (
    EffectError,
    effect_csv,
    effect_markdown,
    parameter_effect,
)
from shpers_core.evaluation.stats import holm
from shpers_core.jobs.spec import flat_defaults
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

N = 12
DEFAULTS = flat_defaults("unified_lora")


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def _lr_run(store, lr, centre, seed=0, **kwargs):
    return add_scored_run(store, "unified_lora", spread(N, centre, int(lr * 1e6) + seed), seed=seed,
                          name=f"lr={lr} seed={seed}", train_params={"learning_rate": lr, **kwargs})


def test_each_value_is_paired_with_the_defaults_point_and_holm_corrected(store):
    d = DEFAULTS["train.learning_rate"]  # Appendix A's; the curve's reference below
    high = _lr_run(store, d * 4, 0.40)
    default = _lr_run(store, d, 0.60)
    low = _lr_run(store, d / 4, 0.61)
    effect = parameter_effect(store, [high, default, low], defaults=DEFAULTS)
    assert effect.parameter == "train.learning_rate" and effect.also_varied == []
    assert [p.value for p in effect.points] == [d / 4, d, d * 4]  # on the number line, not in the given order
    ref = effect.reference
    # The default is the reference even where another value has the higher mean.
    assert ref.value == d and effect.reference_reason == "the default" and ref.verdict == "reference"
    scores = {rid: store.persona_scores(rid) for rid in (high, default, low)}
    raw = [wilcoxon([scores[rid][p] - scores[default][p] for p in sorted(scores[default])]).pvalue
           for rid in (low, high)]
    lowest, highest = effect.points[0], effect.points[2]
    assert [lowest.p_holm, highest.p_holm] == pytest.approx(holm(raw))
    assert highest.verdict == "worse" and highest.diff == pytest.approx(
        np.mean(list(scores[high].values())) - np.mean(list(scores[default].values())))
    assert highest.diff_interval[1] < 0
    assert lowest.verdict == "no difference shown"
    assert ref.mean == pytest.approx(np.mean(list(scores[default].values())))
    assert ref.interval[0] < ref.mean < ref.interval[1]
    text = effect_markdown(effect)
    assert "against train.learning_rate (unified_lora, all turns)" in text
    assert f"Reference: train.learning_rate = {d:g} (the default)" in text and f"Best mean: {d / 4:g}" in text
    assert f"Below it: {d * 4:g} (" in text and "Above it" not in text


def test_runs_at_one_value_with_other_seeds_pool_persona_by_persona(store):
    a = _lr_run(store, 1e-3, 0.50, seed=0)
    b = _lr_run(store, 1e-3, 0.56, seed=1)
    c = _lr_run(store, 5e-4, 0.60)
    effect = parameter_effect(store, [a, b, c])  # no defaults: the best mean is the reference
    pooled = effect.points[1]
    assert pooled.run_ids == [a, b] and pooled.n_personas == N
    sa, sb = store.persona_scores(a), store.persona_scores(b)
    assert pooled.mean == pytest.approx(np.mean([(sa[p] + sb[p]) / 2 for p in sa]))
    assert effect.reference.value == 5e-4 and effect.reference_reason == "the best mean"
    text = effect_markdown(effect)
    assert "2 runs pooled" in text
    assert "= 0.0005 (the best mean)" in text and "Best mean:" not in text  # said once


def test_the_final_validation_loss_is_read_from_the_curves(store):
    a, b = _lr_run(store, 1e-3, 0.5), _lr_run(store, 2e-4, 0.6)
    store.add_curve_points(a, [("persona_000", "val", 10, 3.0), ("persona_000", "val", 20, 2.0),
                               ("persona_001", "val", 20, 1.0), ("persona_000", "train", 20, 9.0)])
    effect = parameter_effect(store, [a, b])
    assert effect.points[1].val_loss == pytest.approx(1.5) and effect.points[0].val_loss is None


@pytest.mark.parametrize("case, message", [
    ("one", "at least two runs"),
    ("methods", "several methods (base_model, unified_lora)"),
    ("same", "share every setting"),
    ("two", "differ in lora.rank, train.learning_rate; name the parameter"),
    ("named", "every run has the same train.seed (0)"),
    ("unknown", "no parameter 'no_such'"),
    ("mixed", "at train.learning_rate = 0.001 the runs also differ in lora.rank"),
])
def test_runs_that_make_no_curve_are_refused_saying_why(store, case, message):
    a = _lr_run(store, 1e-3, 0.5)
    if case == "one":
        ids, parameter = [a], None
    elif case == "methods":
        ids, parameter = [a, add_scored_run(store, "base_model", spread(N, 0.4, 3))], None
    elif case == "same":
        ids, parameter = [a, _lr_run(store, 1e-3, 0.5)], None
    elif case in ("two", "named", "unknown"):
        b = add_scored_run(store, "unified_lora", spread(N, 0.5, 1), train_params={"learning_rate": 2e-4})
        store.update_run(b, params={**store.get_run(b).params, "lora": {"rank": 4}})
        ids, parameter = [a, b], {"two": None, "named": "seed", "unknown": "no_such"}[case]
    else:
        b = _lr_run(store, 1e-3, 0.5, seed=1)
        store.update_run(b, params={**store.get_run(b).params, "lora": {"rank": 4}})
        ids, parameter = [a, b, _lr_run(store, 2e-4, 0.5)], "learning_rate"
    with pytest.raises(EffectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parameter_effect(store, ids, parameter)


def test_runs_effect_prints_the_curve_and_writes_csv(tmp_path, capsys):
    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        ids = [_lr_run(store, lr, c) for lr, c in ((1e-3, 0.40), (2e-4, 0.60))]
    assert main(["--workspace", str(ws.root), "runs", "effect", *ids, "--parameter", "learning_rate"]) == 0
    out = capsys.readouterr().out
    assert "| 0.001 | lr=0.001 seed=0 | 12 |" in out and "worse" in out
    assert main(["--workspace", str(ws.root), "runs", "effect", *ids, "--format", "csv",
                 "--out", str(tmp_path / "lr.csv")]) == 0
    assert capsys.readouterr().out.startswith("wrote 2 values of train.learning_rate to ")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "lr.csv").read_text())))
    assert [r["train.learning_rate"] for r in rows] == ["0.0002", "0.001"]
    assert rows[0]["reference"] == "yes" and rows[1]["verdict"] == "worse" and float(rows[1]["diff"]) < -0.1
    # One of them alone finds the other: the same curve.
    assert main(["--workspace", str(ws.root), "runs", "effect", ids[0], "--format", "csv"]) == 0
    assert capsys.readouterr().out == (tmp_path / "lr.csv").read_text()
    with RunStore(ws.db_path) as store:
        assert effect_csv(parameter_effect(store, ids)) == (tmp_path / "lr.csv").read_text()


def test_runs_on_other_data_never_pool(store):
    a = _lr_run(store, 1e-3, 0.5)
    b = add_scored_run(store, "unified_lora", spread(N, 0.5, 7), seed=1, dataset_hash="other",
                       train_params={"learning_rate": 1e-3})
    c = _lr_run(store, 2e-4, 0.6)
    with pytest.raises(EffectError, match="also differ in dataset"):
        parameter_effect(store, [a, b, c], "learning_rate")


def test_one_run_finds_the_runs_of_its_sweep_from_the_command_line(tmp_path, capsys):
    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        ids = [_lr_run(store, lr, c) for lr, c in ((1e-3, 0.40), (2e-4, 0.60), (5e-5, 0.58))]
        add_scored_run(store, "base_model", spread(N, 0.45, 9))  # another method: never part of the curve
        far = _lr_run(store, 3e-3, 0.5, num_epochs=9)  # two settings away: not part of it either
    assert main(["--workspace", str(ws.root), "runs", "effect", ids[1], "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["train.learning_rate"] for r in rows] == ["5e-05", "0.0002", "0.001"]
    assert far not in ";".join(r["run_ids"] for r in rows)
    # `runs show` points to the curve a run lies on.
    assert main(["--workspace", str(ws.root), "runs", "show", ids[1]]) == 0
    assert (f"on a curve against train.learning_rate with 2 other run(s): shpers runs effect {ids[1]} "
            "--parameter train.learning_rate") in capsys.readouterr().out
    assert main(["--workspace", str(ws.root), "runs", "effect", far]) == 2
    assert f"sweep --like {far}" in capsys.readouterr().err
    assert main(["--workspace", str(ws.root), "runs", "effect", ids[0], "--parameter", "seed"]) == 2
    assert "in train.seed alone; some differ from it in train.learning_rate alone" in capsys.readouterr().err

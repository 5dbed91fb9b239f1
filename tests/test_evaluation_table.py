"""Table 5.1: grouped by model and dataset, each group against its own unified run, Holm-corrected p."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy.stats import t, wilcoxon
from stored_runs import add_scored_run, spread

from shpers_core.evaluation.stats import holm
from shpers_core.evaluation.table import HEADERS, study_rows, to_csv, to_markdown
from shpers_core.store import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def _by_name(rows):
    return {r.run_name: r for r in rows}


def test_each_model_is_compared_with_its_own_unified_run(store):
    n = 12
    tiny_unified = add_scored_run(store, "unified_lora", spread(n, 0.20, 1), name="tiny unified")
    add_scored_run(store, "base_model", spread(n, 0.50, 2), name="tiny base")
    smol_unified = add_scored_run(store, "unified_lora", spread(n, 0.63, 3), base_model="smollm2", name="smol unified")
    add_scored_run(store, "base_model", spread(n, 0.49, 4), base_model="smollm2", name="smol base")
    rows = _by_name(study_rows(store))
    smol_base, smol_uni = rows["smol base"], rows["smol unified"]
    assert smol_base.baseline_run_id == smol_unified and rows["tiny base"].baseline_run_id == tiny_unified
    assert smol_base.diff_vs_unified == pytest.approx(smol_base.mean - smol_uni.mean)
    assert smol_base.diff_vs_unified < 0 < rows["tiny base"].diff_vs_unified
    assert smol_base.verdict == "worse" and rows["tiny base"].verdict == "better"
    assert smol_uni.verdict == "baseline" and smol_uni.p_holm is None
    # Rows of one group stay together, whatever order the runs were made in.
    models = [r.model for r in study_rows(store)]
    assert models == sorted(models, key=models.index) and len(set(models)) == 2
    assert models.index("tiny-qwen2") + models.count("tiny-qwen2") <= models.index("smollm2") or \
        models.index("smollm2") + models.count("smollm2") <= models.index("tiny-qwen2")


def test_another_dataset_is_its_own_group_without_a_baseline(store):
    add_scored_run(store, "unified_lora", spread(6, 0.4, 1), name="u")
    add_scored_run(store, "base_model", spread(6, 0.4, 2), dataset_hash="other", name="b2")
    rows = _by_name(study_rows(store))
    assert rows["b2"].diff_vs_unified is None and rows["b2"].verdict == "no baseline"


def test_p_values_are_paired_wilcoxon_holm_corrected_over_the_rows(store):
    n = 15
    base = spread(n, 0.40, 1)
    add_scored_run(store, "unified_lora", base, name="u")
    shifts = {"small": 0.004, "large": 0.05, "none": 0.0}
    rng = np.random.default_rng(7)
    others = {}
    for name, shift in shifts.items():
        scores = {p: v + shift + rng.normal(0, 0.01) for p, v in base.items()}
        others[name] = scores
        add_scored_run(store, "system_prompt", scores, name=name, dependent_shift=0.03)
    rows = _by_name(study_rows(store))
    raw = [wilcoxon([others[k][p] - base[p] for p in base]).pvalue for k in shifts]
    expected = dict(zip(shifts, holm(raw)))
    for name in shifts:
        assert rows[name].p_holm == pytest.approx(expected[name])
    assert rows["large"].verdict == "better"
    assert rows["none"].verdict == "no difference shown"
    # The persona-dependent split has its own test: +0.03 there on every persona.
    assert rows["none"].persona_dependent_p_holm < 0.05 < rows["none"].p_holm


def test_each_difference_has_an_interval_that_holds_with_the_other_rows(store):
    n = 15
    base = spread(n, 0.40, 1)
    add_scored_run(store, "unified_lora", base, name="u")
    rng = np.random.default_rng(3)
    others = {name: {p: v + shift + rng.normal(0, 0.01) for p, v in base.items()}
              for name, shift in {"large": -0.05, "none": 0.0, "small": 0.004}.items()}
    for name, scores in others.items():
        add_scored_run(store, "system_prompt", scores, name=name, dependent_shift=0.03)
    rows = _by_name(study_rows(store))
    for name, scores in others.items():
        d = np.array([scores[p] - base[p] for p in sorted(base)])
        # Three rows compared: each interval is Student's t at 1 - 0.05 / 3.
        expected = t.interval(1 - 0.05 / 3, n - 1, loc=d.mean(), scale=d.std(ddof=1) / np.sqrt(n))
        assert (rows[name].ci_low, rows[name].ci_high) == pytest.approx(expected)
    assert rows["large"].ci_high < 0 and rows["large"].verdict == "worse"
    assert rows["none"].ci_low < 0 < rows["none"].ci_high
    # The persona-dependent turns have their own interval, around their own difference (+0.03).
    assert 0 < rows["none"].persona_dependent_ci_low < 0.03 < rows["none"].persona_dependent_ci_high
    assert rows["u"].ci_low is None
    line = next(x for x in to_markdown(list(rows.values())).splitlines() if x.startswith("| tiny-qwen2 | ") and "| large |" in x)
    assert f"[{rows['large'].ci_low * 100:+.2f}, {rows['large'].ci_high * 100:+.2f}]" in line


def test_holm_matches_the_textbook_procedure():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None], abs=1e-12)
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_markdown_and_csv_carry_model_dataset_run_method_p_and_verdict(store):
    add_scored_run(store, "unified_lora", spread(8, 0.4, 1), name="u | pipe")
    add_scored_run(store, "base_model", spread(8, 0.3, 2), name="b")
    rows = study_rows(store)
    md = to_markdown(rows)
    head = md.splitlines()[0]
    for column in ("Model", "Dataset", "Run", "Method", "95 % CI (simult.)", "p (Holm)", "Verdict", "dep. p (Holm)",
                   "other p (Holm)"):
        assert f"| {column} |" in head
    body = [line for line in md.splitlines()[2:] if line.startswith("| ")]
    assert all(line.count(" | ") == len(HEADERS) - 1 for line in body)  # the "|" in a name is escaped
    assert any("| base_model |" in line and "| worse |" in line for line in body)
    records = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert {"model", "dataset", "run_name", "method", "p_holm", "verdict", "persona_dependent_p_holm",
            "other_p_holm", "ci_low", "ci_high", "persona_dependent_ci_low", "other_ci_high"} <= set(records[0])
    assert {r["verdict"] for r in records} == {"baseline", "worse"}
    assert "Holm-corrected over the 1 compared row;" in md


def test_rows_with_no_unified_run_say_nothing_was_compared(store):
    """A per-persona sweep's table: no 'Holm over 0 rows' that reads like a result."""
    ids = [add_scored_run(store, "per_persona_lora", spread(8, 0.4 + k / 100, k), name=f"pp {k}") for k in (1, 2)]
    note = to_markdown(study_rows(store, ids)).strip().splitlines()[-1]
    assert note.startswith("Grouped by model and dataset. No row is compared: no group here has a scored unified")
    assert "Holm" not in note


def test_the_baseline_is_the_oldest_unified_run_in_any_order(store):
    import time

    study = add_scored_run(store, "unified_lora", spread(12, 0.60, 1), name="study's unified")
    base = add_scored_run(store, "base_model", spread(12, 0.45, 2), name="base")
    time.sleep(0.01)  # created_at has millisecond steps
    # A later learning-rate trial of unified LoRA, much worse: never the baseline the study is read against.
    trial = add_scored_run(store, "unified_lora", spread(12, 0.30, 3), name="trial", train_params={"learning_rate": 1})
    for order in (None, [study, base, trial], [trial, base, study]):
        rows = _by_name(study_rows(store, order))
        assert rows["study's unified"].verdict == "baseline"
        assert {r.baseline_run_id for r in rows.values()} == {study}
        assert rows["base"].verdict == "worse" and rows["trial"].verdict == "worse"

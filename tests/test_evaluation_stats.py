import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from shpers_core.errors import UserError
from shpers_core.evaluation import PairedStats, StatsError, describe, paired_comparison


def _scores(values):
    return {f"persona_{i:03d}": float(v) for i, v in enumerate(values)}


def test_difference_is_b_minus_a_over_shared_personas_only():
    a = {"p1": 0.5, "p2": 0.6, "p3": 0.7, "only_a": 0.0}
    b = {"p1": 0.6, "p2": 0.6, "p3": 0.9, "only_b": 1.0}
    s = paired_comparison(a, b, n_boot=200)
    assert s.n == 3
    assert s.mean_a == pytest.approx(0.6)
    assert s.mean_b == pytest.approx(0.7)
    assert s.mean_diff == pytest.approx(0.1)
    assert s.std_diff == pytest.approx(np.std([0.1, 0.0, 0.2], ddof=1))
    assert (s.wins, s.ties, s.losses) == (2, 1, 0)
    assert set(s.diffs) == {"p1", "p2", "p3"}


def test_fewer_than_two_shared_personas_is_a_user_error():
    with pytest.raises(StatsError, match="at least 2 personas.*found 1"):
        paired_comparison({"p1": 0.1, "p2": 0.2}, {"p1": 0.3, "p3": 0.4})
    assert issubclass(StatsError, UserError) and issubclass(StatsError, ValueError)


def test_non_finite_score_names_the_persona():
    with pytest.raises(StatsError, match="persona 'p2' for B"):
        paired_comparison({"p1": 0.1, "p2": 0.2}, {"p1": 0.3, "p2": math.nan})


def test_bootstrap_ci_is_reproducible_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    a = _scores(rng.uniform(0.5, 0.9, 40))
    b = {k: v + 0.03 + rng.normal(0, 0.02) for k, v in a.items()}
    s1 = paired_comparison(a, b, seed=3)
    s2 = paired_comparison(a, b, seed=3)
    assert (s1.ci_low, s1.ci_high) == (s2.ci_low, s2.ci_high)
    assert s1.ci_low < s1.mean_diff < s1.ci_high
    assert 0.0 < s1.ci_low  # a clear +0.03 shift
    # The percentile interval is close to the normal one for a mean of 40 values.
    half = 1.96 * s1.std_diff / math.sqrt(40)
    assert s1.ci_high - s1.ci_low == pytest.approx(2 * half, rel=0.2)


def test_bootstrap_in_blocks_matches_one_block(monkeypatch):
    import shpers_core.evaluation.stats as stats

    diffs = np.linspace(-0.1, 0.3, 25)
    whole = stats.bootstrap_ci(diffs, n_boot=500, seed=7)
    monkeypatch.setattr(stats, "_BOOT_BLOCK", 25 * 7)
    assert stats.bootstrap_ci(diffs, n_boot=500, seed=7) == whole


def test_wilcoxon_matches_scipy_and_handles_all_ties():
    a = _scores([0.50, 0.61, 0.72, 0.40, 0.55, 0.66, 0.70, 0.58])
    b = _scores([0.55, 0.60, 0.80, 0.47, 0.59, 0.70, 0.69, 0.66])
    s = paired_comparison(a, b, n_boot=100)
    d = np.array([b[k] - a[k] for k in sorted(a)])
    assert s.p_value == pytest.approx(wilcoxon(d).pvalue)
    same = paired_comparison(a, dict(a), n_boot=100)
    assert same.p_value == 1.0
    assert (same.wins, same.ties, same.losses) == (0, 8, 0)
    assert same.mean_diff == 0.0 and same.ci_low == 0.0 and same.ci_high == 0.0


def test_float_noise_within_tolerance_is_a_tie():
    a = _scores([0.1, 0.2, 0.3, 0.4])
    b = {k: v + 1e-12 for k, v in a.items()}
    s = paired_comparison(a, b, n_boot=50)
    assert (s.wins, s.ties, s.losses) == (0, 4, 0)
    assert s.p_value == 1.0


def test_largest_differences_and_summary():
    a = {"p1": 0.5, "p2": 0.5, "p3": 0.5, "p4": 0.5}
    b = {"p1": 0.6, "p2": 0.2, "p3": 0.5, "p4": 0.58}
    s = paired_comparison(a, b, n_boot=100)
    assert [k for k, _ in s.largest_differences(2)] == ["p2", "p1"]
    assert s.largest_differences(2)[0][1] == pytest.approx(-0.3)
    text = s.summary()
    assert text.startswith("B − A = -0.030 [95% CI ")
    assert "W/T/L 2/1/1 (n = 4)" in text and "Wilcoxon p = " in text
    assert s.summary("unified", "per-persona").startswith("per-persona − unified = ")


def test_summary_small_p_value():
    a = _scores(np.zeros(30))
    b = _scores(np.arange(1, 31) / 100)
    assert "Wilcoxon p < 0.001" in paired_comparison(a, b, n_boot=100).summary()


def test_paired_stats_is_frozen_and_hashable():
    s = paired_comparison({"p1": 0.1, "p2": 0.2}, {"p1": 0.2, "p2": 0.2}, n_boot=10)
    assert isinstance(s, PairedStats)
    hash(s)
    with pytest.raises(AttributeError):
        s.n = 3


@pytest.mark.parametrize("kwargs", [{"ci": 1.0}, {"ci": 0.0}, {"n_boot": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        paired_comparison({"p1": 0.1, "p2": 0.2}, {"p1": 0.2, "p2": 0.3}, **kwargs)


def test_describe():
    d = describe({"a": 0.2, "b": 0.4, "c": 0.9})
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(0.5)
    assert d["std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert (d["min"], d["max"]) == (0.2, 0.9)
    one = describe([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["std"])
    empty = describe([])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_verdict_says_whether_a_difference_is_real():
    personas = [f"p{i}" for i in range(20)]
    a = {p: 0.40 + 0.01 * (i % 5) for i, p in enumerate(personas)}
    clearly_better = paired_comparison(a, {p: v + 0.05 + 0.001 * i for i, (p, v) in enumerate(a.items())})
    assert clearly_better.verdict("unified", "per-persona").startswith("per-persona beats unified")
    clearly_worse = paired_comparison(a, {p: v - 0.05 for p, v in a.items()})
    assert clearly_worse.verdict("unified", "per-persona").startswith("unified beats per-persona")
    noise = paired_comparison(a, {p: v + (0.01 if i % 2 else -0.01) for i, (p, v) in enumerate(a.items())})
    assert noise.verdict().startswith("No real difference shown")


def test_simultaneous_intervals_hold_together_where_plain_ones_do_not():
    # 17 rows against one baseline, 20 personas each, as in the quick study's table.
    from shpers_core.evaluation.stats import simultaneous_interval

    rng = np.random.default_rng(0)
    rows, personas, trials = 17, 20, 600
    truth = np.linspace(-0.15, 0.02, rows)
    all_held = {17: 0, 1: 0}
    for _ in range(trials):
        diffs = truth[:, None] + rng.normal(0.0, 0.05, size=(rows, personas))
        for family in all_held:
            intervals = [simultaneous_interval(d, family) for d in diffs]
            all_held[family] += all(lo <= t <= hi for (lo, hi), t in zip(intervals, truth))
    assert all_held[17] / trials >= 0.93  # at least 95 %, less this test's sampling error
    assert all_held[1] / trials < 0.6  # seventeen separate 95 % intervals all hold far less often


def test_simultaneous_interval_is_students_t_at_the_bonferroni_level():
    from scipy.stats import t

    from shpers_core.evaluation.stats import simultaneous_interval

    d = np.array([0.1, 0.3, -0.05, 0.2, 0.12, 0.07])
    sem = d.std(ddof=1) / math.sqrt(len(d))
    assert simultaneous_interval(d, 1) == pytest.approx(t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sem))
    assert simultaneous_interval(d, 4) == pytest.approx(t.interval(1 - 0.05 / 4, len(d) - 1, loc=d.mean(), scale=sem))
    assert simultaneous_interval(d[:1], 4) is None

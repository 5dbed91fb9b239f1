"""Paired comparison of two methods' per-persona scores.

The difference is always ``b - a``: "how much better is B than A". Both methods were scored on
the same personas' test sets, so the persona is the unit of pairing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from shpers_core.errors import UserError

# Resampled means are built in blocks of about this many draws to bound memory for large n.
_BOOT_BLOCK = 2_000_000


class StatsError(UserError, ValueError):
    """The scores given cannot support the statistic asked for."""


@dataclass(frozen=True)
class PairedStats:
    """Result of :func:`paired_comparison`; every difference is B minus A."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    ci: float
    p_value: float
    wins: int
    ties: int
    losses: int
    diffs: Mapping[str, float] = field(repr=False, hash=False)

    def largest_differences(self, k: int = 5) -> list[tuple[str, float]]:
        """The k personas with the largest |B - A|, largest first (ties by persona id)."""
        ranked = sorted(self.diffs.items(), key=lambda item: (-abs(item[1]), item[0]))
        return ranked[:k]

    def verdict(self, a: str = "A", b: str = "B", alpha: float = 0.05) -> str:
        """Whether the difference is real, in words: both the interval and the test must agree."""
        excludes_zero = self.ci_low > 0 or self.ci_high < 0
        if excludes_zero and self.p_value < alpha:
            better, worse = (b, a) if self.mean_diff > 0 else (a, b)
            return (f"{better} beats {worse}: the {self.ci * 100:g}% interval excludes 0 and "
                    f"Wilcoxon p < {alpha:g} over {self.n} personas.")
        if excludes_zero or self.p_value < alpha:
            return (f"Borderline: the interval and the Wilcoxon test disagree over {self.n} personas; "
                    "compare on more personas before concluding.")
        return (f"No real difference shown: the interval contains 0 and Wilcoxon p >= {alpha:g} "
                f"over {self.n} personas.")

    def summary(self, a: str = "A", b: str = "B") -> str:
        p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
        return (f"{b} − {a} = {self.mean_diff:+.3f} [{self.ci * 100:g}% CI {self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], Wilcoxon {p}, W/T/L {self.wins}/{self.ties}/{self.losses} "
                f"(n = {self.n})")


def _check_finite(scores: Mapping[str, float], side: str, keys: Iterable[str]) -> None:
    for key in keys:
        if not math.isfinite(scores[key]):
            raise StatsError(f"score of persona {key!r} for {side} is {scores[key]}, not a number")


def bootstrap_ci(diffs: np.ndarray, *, n_boot: int = 10000, seed: int = 0,
                 ci: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (personas resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(diffs)
    rows = max(1, _BOOT_BLOCK // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        means[start:stop] = diffs[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - ci) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; zero differences are dropped (Wilcoxon's method)."""
    # lazy: scipy; evaluation/__init__ imports this module, and evaluation.config (the app's forms) needs no scipy
    from scipy.stats import wilcoxon

    nonzero = diffs[diffs != 0.0]
    if len(nonzero) == 0:
        return 1.0
    return float(wilcoxon(nonzero, alternative="two-sided").pvalue)


def simultaneous_interval(diffs: np.ndarray, comparisons: int, *, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean of ``diffs`` at the Bonferroni level ``1 - (1 - level) / comparisons``.

    Every one of ``comparisons`` such intervals holds its true mean together with probability at least
    ``level``, the guarantee Holm's p-values give the table's verdicts. Student's t rather than the
    bootstrap: at that level a percentile bootstrap over a few dozen personas reads its outermost draws
    and comes out too narrow. None below 2 differences.
    """
    n = len(diffs)
    if n < 2 or comparisons < 1:
        return None
    # lazy: scipy, as in wilcoxon_p
    from scipy.stats import t

    alpha = (1.0 - level) / comparisons
    half = float(t.ppf(1.0 - alpha / 2.0, n - 1)) * float(diffs.std(ddof=1)) / math.sqrt(n)
    mean = float(diffs.mean())
    return mean - half, mean + half


def holm(p_values: Iterable[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the given order; None stays None and is not counted.

    Holm controls the family-wise error rate without assuming independence, which suits rows
    that all share one baseline run.
    """
    values = list(p_values)
    present = [i for i, p in enumerate(values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(values)
    running = 0.0
    for rank, i in enumerate(sorted(present, key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


def paired_comparison(a: Mapping[str, float], b: Mapping[str, float], *, n_boot: int = 10000,
                      seed: int = 0, tie_tolerance: float = 1e-9, ci: float = 0.95) -> PairedStats:
    """Compare B with A over the personas both were scored on.

    Differences within ``tie_tolerance`` of zero count as ties and as zeros for Wilcoxon.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        raise StatsError(f"a paired comparison needs at least 2 personas scored by both methods, "
                         f"found {len(shared)} (A has {len(a)}, B has {len(b)})")
    _check_finite(a, "A", shared)
    _check_finite(b, "B", shared)
    va = np.array([a[k] for k in shared], dtype=np.float64)
    vb = np.array([b[k] for k in shared], dtype=np.float64)
    diffs = vb - va
    tied = np.abs(diffs) <= tie_tolerance
    low, high = bootstrap_ci(diffs, n_boot=n_boot, seed=seed, ci=ci)
    return PairedStats(
        n=len(shared),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        mean_diff=float(diffs.mean()),
        std_diff=float(diffs.std(ddof=1)),
        ci_low=low,
        ci_high=high,
        ci=ci,
        p_value=wilcoxon_p(np.where(tied, 0.0, diffs)),
        wins=int(np.sum(diffs > tie_tolerance)),
        ties=int(np.sum(tied)),
        losses=int(np.sum(diffs < -tie_tolerance)),
        diffs=dict(zip(shared, diffs.tolist())),
    )


def describe(values: Iterable[float] | Mapping[str, float]) -> dict[str, float]:
    """Mean, sample std (ddof=1), min, max and n for a table row; NaN where undefined."""
    if isinstance(values, Mapping):
        values = values.values()
    arr = np.asarray(list(values), dtype=np.float64)
    n = len(arr)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if n > 1 else math.nan,
            "min": float(arr.min()), "max": float(arr.max()), "n": n}

"""The study's Table 5.1, regenerated from the run store, as Markdown or CSV.

Rows are grouped by base model and dataset; each group's baseline is its own unified LoRA run (the
oldest scored one, where a sweep or a retrial added more), so a run is never compared with a unified
run of another model or dataset. Every row but the baseline
gets a paired Wilcoxon p-value against it (on the personas both scored), Holm-corrected over all
rows of the table, and a simultaneous 95 % interval for its difference (Bonferroni over the same
rows), for all turns and separately for persona-dependent and other turns.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from shpers_core.evaluation.likeness import dataset_label
from shpers_core.evaluation.replicates import effective_seed, replicate_groups
from shpers_core.evaluation.stats import describe, holm, simultaneous_interval, wilcoxon_p
from shpers_core.store import StoreError
from shpers_core.store.records import RunRecord

BASELINE_METHOD = "unified_lora"
METRIC = "embedding_similarity"
ALPHA = 0.05
SUBSETS = ("all", "persona_dependent", "other")
# One word per row, as the findings ask; "baseline" marks the row the others are compared with.
BETTER, WORSE, NO_DIFFERENCE, BASELINE, NO_BASELINE = (
    "better", "worse", "no difference shown", "baseline", "no baseline")


@dataclass
class TableRow:
    model: str
    dataset: str
    run_name: str
    method: str
    run_id: str
    status: str
    n_personas: int
    mean: float | None
    std: float | None
    diff_vs_unified: float | None
    # Simultaneous 95 % interval of the difference: all rows' intervals hold together with 95 %.
    ci_low: float | None
    ci_high: float | None
    p_holm: float | None
    verdict: str
    min: float | None
    max: float | None
    persona_dependent: float | None
    persona_dependent_diff: float | None
    persona_dependent_ci_low: float | None
    persona_dependent_ci_high: float | None
    persona_dependent_p_holm: float | None
    other: float | None
    other_diff: float | None
    other_ci_low: float | None
    other_ci_high: float | None
    other_p_holm: float | None
    device_precision: float | None
    parameter_f1: float | None
    numerical_precision: float | None
    trainable_params: int | None
    train_seconds: float | None
    baseline_run_id: str
    dataset_hash: str = ""
    # Training seeds of the runs in the row: one, or several for runs pooled over seeds.
    seeds: tuple[int, ...] = ()
    # Across pooled seeds, the standard deviation of the row's mean (None for one run).
    seed_std: float | None = None
    # Each persona's score by subset (SUBSETS), for paired tests beyond the unified baseline; not a column.
    persona_scores: dict[str, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_baseline(self) -> bool:
        return self.verdict == BASELINE

    @property
    def group(self) -> tuple[str, str]:
        return self.model, self.dataset_hash or self.dataset


def paired_diffs(a: dict[str, float], b: dict[str, float]) -> np.ndarray | None:
    """b − a over the personas both scored, in persona order; None below 2 or if any is not finite."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    diffs = np.array([b[k] - a[k] for k in shared], dtype=np.float64)
    return diffs if np.all(np.isfinite(diffs)) else None


def paired_p(diffs: np.ndarray | None) -> float | None:
    """Two-sided Wilcoxon p of :func:`paired_diffs`, differences within 1e-9 of zero as ties."""
    if diffs is None:
        return None
    return wilcoxon_p(np.where(np.abs(diffs) <= 1e-9, 0.0, diffs))


def paired_family(diffs: list[np.ndarray | None]) -> list[tuple[float | None, tuple[float, float] | None]]:
    """Each of a family of paired comparisons (:func:`paired_diffs`, None where untested): its Holm-corrected
    p and its simultaneous 95 % interval (Bonferroni over the comparisons that have a test)."""
    corrected = holm(paired_p(d) for d in diffs)
    family = sum(d is not None for d in diffs)  # Holm's family and Bonferroni's: the rows that have a test
    return [(p, simultaneous_interval(d, family, level=1.0 - ALPHA) if d is not None else None)
            for d, p in zip(diffs, corrected)]


def verdict_of(diff: float | None, p: float | None) -> str:
    """One word for a difference from unified LoRA and its corrected p-value."""
    if diff is None or p is None:
        return "–"
    if p < ALPHA:
        return BETTER if diff > 0 else WORSE
    return NO_DIFFERENCE


def _run_row(store, run: RunRecord, seed: int) -> tuple[TableRow, dict[str, dict[str, float]]]:
    """One run's row (``seed``: its training seed, or that of the run it builds on), its comparisons
    still empty, and its per-persona scores by subset."""
    # Scores only for a finished run: one whose evaluation was cut short shows none.
    scored = run.status == "finished"
    m = store.metrics(run.id, subset="all") if scored else {}
    dep = store.metrics(run.id, subset="persona_dependent") if scored else {}
    other = store.metrics(run.id, subset="other") if scored else {}
    scores = {s: store.persona_scores(run.id, METRIC, subset=s) if scored else {} for s in SUBSETS}
    row = TableRow(
        model=run.base_model, dataset=dataset_label(run), run_name=run.name or run.id, method=run.method,
        run_id=run.id, status=run.status, n_personas=len(run.personas), mean=m.get(METRIC),
        std=m.get(f"{METRIC}_std"), diff_vs_unified=None, ci_low=None, ci_high=None, p_holm=None,
        verdict="–", min=m.get(f"{METRIC}_min"), max=m.get(f"{METRIC}_max"),
        persona_dependent=dep.get(METRIC), persona_dependent_diff=None, persona_dependent_ci_low=None,
        persona_dependent_ci_high=None, persona_dependent_p_holm=None,
        other=other.get(METRIC), other_diff=None, other_ci_low=None, other_ci_high=None, other_p_holm=None,
        device_precision=m.get("device_precision"), parameter_f1=m.get("parameter_f1"),
        numerical_precision=m.get("numerical_precision"), trainable_params=run.trainable_params,
        train_seconds=run.duration_s, baseline_run_id="", dataset_hash=run.dataset_hash, seeds=(seed,),
    )
    return row, scores


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(present)) if present and len(present) == len(values) else None


def _pooled_row(parts: list[tuple[TableRow, dict[str, dict[str, float]]]]) -> tuple[TableRow, dict[str, dict[str, float]]]:
    """One row for replicates (:mod:`replicates`): each persona's score is its mean over the seeds."""
    first = parts[0][0]
    scores: dict[str, dict[str, float]] = {}
    for s in SUBSETS:
        shared = set.intersection(*(set(sc[s]) for _, sc in parts))
        scores[s] = {p: float(np.mean([sc[s][p] for _, sc in parts])) for p in sorted(shared)}
    every, dep, other = (describe(scores[s]) for s in SUBSETS)

    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    def average(name: str) -> float | None:
        return _mean_or_none([getattr(r, name) for r, _ in parts])

    runs_means = [r.mean for r, _ in parts]
    # A seed sweep names its runs "NAME seed=N" (jobs/sweep.py): the pooled row is NAME.
    name = first.run_name.removesuffix(f" seed={first.seeds[0]}") or first.run_name
    row = replace(
        first, run_name=name, run_id=",".join(r.run_id for r, _ in parts),
        n_personas=every["n"], mean=finite(every["mean"]), std=finite(every["std"]), min=finite(every["min"]),
        max=finite(every["max"]), persona_dependent=finite(dep["mean"]), other=finite(other["mean"]),
        device_precision=average("device_precision"), parameter_f1=average("parameter_f1"),
        numerical_precision=average("numerical_precision"), train_seconds=average("train_seconds"),
        seeds=tuple(r.seeds[0] for r, _ in parts),
        seed_std=float(np.std(runs_means, ddof=1)) if None not in runs_means else None)
    return row, scores


def study_rows(store, run_ids: list[str] | None = None, *, pool_seeds: bool = False) -> list[TableRow]:
    """One row per run, grouped by (base model, dataset) in order of first appearance; within a
    group rows keep the given order (newest first when ``run_ids`` is None), and the baseline is the
    group's oldest scored unified LoRA run. Numbers are read from the store. With ``pool_seeds``, finished runs that differ only in their training seed become one
    row whose per-persona scores are means over the seeds (:func:`replicate_groups`)."""
    runs = [store.get_run(r) for r in run_ids] if run_ids else store.list_runs()
    known: dict[str, RunRecord | None] = {run.id: run for run in runs}

    def parent_of(run_id: str) -> RunRecord | None:
        if run_id not in known:
            try:
                known[run_id] = store.get_run(run_id)
            except StoreError:  # deleted since: the run stands on its own
                known[run_id] = None
        return known[run_id]

    units = replicate_groups(runs, parent_of) if pool_seeds else [[run] for run in runs]
    rows: list[TableRow] = []
    for unit in units:
        parts = [_run_row(store, run, effective_seed(run, parent_of)) for run in unit]
        row, unit_scores = parts[0] if len(parts) == 1 else _pooled_row(parts)
        row.persona_scores = unit_scores
        rows.append(row)
    groups: dict[tuple[str, str], list[TableRow]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    diffs: dict[str, list[np.ndarray | None]] = {s: [] for s in SUBSETS}
    compared: list[TableRow] = []
    def started(row: TableRow) -> str:  # a pooled row's earliest run
        return min(known[rid].created_at for rid in row.run_id.split(","))

    for members in groups.values():
        # The oldest scored unified run: the study's own row, not a later sweep or retrial of it, whatever
        # the order the rows are listed in (`runs export` lists newest first, the app's table oldest first).
        base = min((r for r in members if r.method == BASELINE_METHOD and r.mean is not None), key=started,
                   default=None)
        for r in members:
            if base is None:
                r.verdict = NO_BASELINE if r.mean is not None else "–"
                continue
            r.baseline_run_id = base.run_id
            if r is base:
                r.verdict = BASELINE
                continue
            if r.mean is not None:
                r.diff_vs_unified = r.mean - base.mean
            if r.persona_dependent is not None and base.persona_dependent is not None:
                r.persona_dependent_diff = r.persona_dependent - base.persona_dependent
            if r.other is not None and base.other is not None:
                r.other_diff = r.other - base.other
            compared.append(r)
            for s in SUBSETS:
                diffs[s].append(paired_diffs(base.persona_scores[s], r.persona_scores[s]))
    for s in SUBSETS:
        prefix = "" if s == "all" else f"{s}_"
        for r, (p, interval) in zip(compared, paired_family(diffs[s])):
            setattr(r, f"{prefix}p_holm", p)
            if interval is not None:
                setattr(r, f"{prefix}ci_low", interval[0])
                setattr(r, f"{prefix}ci_high", interval[1])
    for r in compared:
        r.verdict = verdict_of(r.diff_vs_unified, r.p_holm)
    return [r for members in groups.values() for r in members]


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.2f}" if signed else f"{x * 100:.2f}"


def format_p(p: float | None) -> str:
    if p is None:
        return "–"
    if p < 0.001:
        return "< 0.001"
    # One more digit where three would print a p below the verdict's threshold as the threshold itself.
    return f"{p:.4f}" if f"{p:.3f}" == f"{ALPHA:.3f}" and p != ALPHA else f"{p:.3f}"


def _params(n: int | None) -> str:
    if not n:
        return "0"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


CI_HEADER = "95 % CI (simult.)"
# Each column's header and the row field it sorts by (None: by its text), in the table's order.
COLUMNS: list[tuple[str, str | None]] = [
    ("Model", None), ("Dataset", None), ("Run", None), ("Seeds", None), ("Method", None), ("Emb. sim. % (mean ± std)", "mean"),
    ("vs unified", "diff_vs_unified"), (CI_HEADER, "ci_low"), ("p (Holm)", "p_holm"),
    ("Verdict", None), ("min–max", "min"), ("persona-dep.", "persona_dependent"),
    ("dep. vs unified", "persona_dependent_diff"), ("dep. p (Holm)", "persona_dependent_p_holm"),
    ("other", "other"), ("other vs unified", "other_diff"), ("other p (Holm)", "other_p_holm"),
    ("Device P", "device_precision"), ("Param F1", "parameter_f1"), ("Num. P", "numerical_precision"),
    ("Parameters", "trainable_params"), ("Train time", "train_seconds"), ("Run id", None)]
HEADERS = [header for header, _ in COLUMNS]


def _diff(r: TableRow, value: float | None) -> str:
    return "baseline" if r.is_baseline else _pct(value, signed=True)


def _p(r: TableRow, value: float | None) -> str:
    return "" if r.is_baseline else format_p(value)


def _seeds(r: TableRow) -> str:
    """"0" for one run; "0, 1, 2 (± 0.32)" for runs pooled over seeds, with their means' spread in points."""
    text = ", ".join(map(str, r.seeds))
    return text if r.seed_std is None else f"{text} (± {r.seed_std * 100:.2f})"


def _interval(r: TableRow, low: float | None, high: float | None) -> str:
    if r.is_baseline:
        return ""
    return "–" if low is None or high is None else f"[{_pct(low, signed=True)}, {_pct(high, signed=True)}]"


def row_cells(r: TableRow) -> list[str]:
    """The row as the Markdown table shows it, one string per :data:`HEADERS` entry."""
    sim = f"({r.status})" if r.mean is None else f"{_pct(r.mean)} ± {_pct(r.std)}"
    return [r.model, r.dataset, r.run_name, _seeds(r), r.method, sim, _diff(r, r.diff_vs_unified),
            _interval(r, r.ci_low, r.ci_high), _p(r, r.p_holm), r.verdict, f"{_pct(r.min)}–{_pct(r.max)}",
            _pct(r.persona_dependent), _diff(r, r.persona_dependent_diff), _p(r, r.persona_dependent_p_holm), _pct(r.other),
            _diff(r, r.other_diff), _p(r, r.other_p_holm), _pct(r.device_precision), _pct(r.parameter_f1),
            _pct(r.numerical_precision), _params(r.trainable_params), _duration(r.train_seconds), r.run_id]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(rows: list[TableRow]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row_cells(r)) + " |" for r in rows]
    note = f"\n{table_note(_n_compared(rows))}\n"
    return "\n".join(lines) + "\n" + note


def _n_compared(rows: list[TableRow]) -> int:
    return sum(1 for r in rows if r.p_holm is not None)


def table_note(compared: int | None = None) -> str:
    """What the table's comparisons mean, for under it; ``compared``: how many rows were tested."""
    seeds = ("Seeds: the training seeds of the row's runs; for runs pooled over seeds, the spread (± one standard "
             "deviation, in points) of their means.")
    if compared == 0:
        # A per-persona sweep's rows, say: saying "Holm over 0 rows" would read as a result.
        return ("Grouped by model and dataset. No row is compared: no group here has a scored unified LoRA run, "
                f"the baseline each group's rows are compared with. {seeds}")
    rows = ("the compared rows" if compared is None else
            f"the {compared} compared row{'s' if compared != 1 else ''}")
    return ("Grouped by model and dataset; each group is compared with its own unified LoRA run (the oldest, "
            "where there are several). "
            f"p: paired two-sided Wilcoxon over personas, Holm-corrected over {rows}; verdict at "
            f"p < {ALPHA:g}. {CI_HEADER}: the difference's interval in points, Student t at the Bonferroni "
            f"level over the same rows, so all intervals hold together with {(1 - ALPHA) * 100:g} % confidence. "
            f"{seeds}")


def to_csv(rows: list[TableRow]) -> str:
    buf = io.StringIO()
    columns = [name for name in TableRow.__dataclass_fields__ if name != "persona_scores"]
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        values = asdict(r)
        # Seeds as "0 1 2": one cell a spreadsheet or pandas reads without parsing Python.
        writer.writerow({k: " ".join(map(str, values[k])) if isinstance(values[k], tuple) else values[k]
                         for k in columns})
    return buf.getvalue()

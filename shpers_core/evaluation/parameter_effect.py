"""How a score changes with one parameter across runs: a sweep's curve, with paired statistics.

Runs of one method that differ in one setting (a sweep's runs, or any picked by hand) become one point
per value of that setting. Runs at the same value pool, as Table 5.1 pools seeds: each persona's score
is its mean over them. Each point is paired with a reference point (the parameter's default where a
point has it, else the best-scoring point) over the personas both scored: Wilcoxon, Holm over the other
points, and simultaneous Student t intervals, the table's own machinery (:func:`table.paired_family`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shpers_core.errors import UserError
from shpers_core.evaluation.metrics import METRIC_LABELS
from shpers_core.evaluation.stats import simultaneous_interval
from shpers_core.evaluation.table import (
    ALPHA,
    METRIC,
    SUBSETS,
    format_p,
    paired_diffs,
    paired_family,
    verdict_of,
)
from shpers_core.params import GROUP_ALIASES
from shpers_core.store.records import RunRecord

SEED = "train.seed"
SOURCE_RUN = "source_run"
SETTING_GROUPS = ("method_params", "lora", "train", "eval")
"""The recorded parameter groups a curve can vary (as ``group.name``), besides the base model and dtype."""
REFERENCE_DEFAULT, REFERENCE_BEST = "the default", "the best mean"
REFERENCE = "reference"
"""The verdict of the point the others are paired with."""


class EffectError(UserError):
    """Runs that do not make a curve: too few, of several methods, or no one setting between them."""


@dataclass
class EffectPoint:
    """The runs at one value of the parameter, pooled."""

    value: Any
    run_ids: list[str]
    run_names: list[str]
    status: str
    """"finished" when at least one run at this value is, else the first run's status (no score)."""
    n_personas: int = 0
    mean: float | None = None
    interval: tuple[float, float] | None = None
    """95 % Student t interval of the mean over personas."""
    val_loss: float | None = None
    """Final validation loss: each series' last point, averaged over series and runs."""
    diff: float | None = None
    """Mean over the shared personas of this point's score minus the reference's."""
    diff_interval: tuple[float, float] | None = None
    p_holm: float | None = None
    verdict: str = "–"
    is_reference: bool = False
    scores: dict[str, float] = field(default_factory=dict, repr=False)


@dataclass
class ParameterEffect:
    method: str
    parameter: str
    metric: str
    subset: str
    points: list[EffectPoint]
    reference_reason: str
    """Why the reference point is the one: :data:`REFERENCE_DEFAULT` or :data:`REFERENCE_BEST`."""
    also_varied: list[str]
    """Other settings that differ between the runs (the seed aside): the curve mixes their effects."""

    @property
    def reference(self) -> EffectPoint | None:
        return next((p for p in self.points if p.is_reference), None)

    @property
    def numeric(self) -> bool:
        """Every value is a number (not a bool), so the points lie on a number line."""
        return all(isinstance(p.value, int | float) and not isinstance(p.value, bool) for p in self.points)


def run_settings(run: RunRecord) -> dict[str, Any]:
    """A run's recorded settings as ``{"group.name": value}``, plus ``base_model``, ``dtype``, ``dataset``
    (its hash: runs on other data are never pooled, and a curve across datasets says so) and ``source_run``,
    the run a merge or prefix built on (merges of other adapters are not repeats of each other)."""
    out = {f"{group}.{name}": value for group in SETTING_GROUPS
           for name, value in (run.params.get(group) or {}).items()}
    out["base_model"] = run.base_model
    out["dtype"] = run.params.get("dtype")
    out["dataset"] = run.dataset_hash
    out[SOURCE_RUN] = run.parent_run_id
    return out


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varied_settings(runs: Sequence[RunRecord]) -> list[str]:
    """The settings whose recorded values are not the same in every run, in a stable order."""
    settings = [run_settings(run) for run in runs]
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({_key(s.get(k)) for s in settings}) > 1]


def resolve_setting(name: str, varied: list[str], known: set[str]) -> str:
    """The full ``group.name`` of a parameter a user named bare, qualified or by a group alias."""
    group, dot, rest = name.partition(".")
    if dot and group in GROUP_ALIASES:
        name = f"{GROUP_ALIASES[group]}.{rest}"
    if name in known:
        return name
    matches = sorted(k for k in known if k.endswith("." + name))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise EffectError(f"parameter {name!r} is in several groups ({', '.join(matches)}); name one")
    hint = f"the runs differ in {', '.join(varied)}" if varied else "the runs share every setting"
    raise EffectError(f"the runs have no parameter {name!r}; {hint}")


def _chosen(runs: Sequence[RunRecord], parameter: str | None) -> tuple[str, list[str]]:
    varied = varied_settings(runs)
    if parameter is not None:
        known = {k for run in runs for k in run_settings(run)}
        chosen = resolve_setting(parameter, varied, known)
        if chosen not in varied:
            raise EffectError(f"every run has the same {chosen} ({run_settings(runs[0]).get(chosen)!r}); "
                              f"the runs differ in {', '.join(varied) or 'nothing'}")
        return chosen, varied
    candidates = [k for k in varied if k != SEED] or varied
    if not candidates:
        raise EffectError("the runs share every setting: nothing to plot against (`shpers runs compare` "
                          "pairs two of them)")
    if len(candidates) > 1:
        raise EffectError(f"the runs differ in {', '.join(candidates)}; name the parameter to plot against")
    return candidates[0], varied


def sibling_groups(store, run_id: str) -> dict[str, list[str]]:
    """The curves ``run_id`` belongs to: for each setting, the finished runs of its method that differ from it
    in that setting alone (the seed aside), ``run_id`` and its other-seed repeats first; most runs first.

    A sweep's runs are found from any one of them, whatever they were named.
    """
    anchor = store.get_run(run_id)
    mine = run_settings(anchor)
    repeats: list[str] = []
    groups: dict[str, list[str]] = {}
    for run in reversed(store.list_runs(status="finished", method=anchor.method)):  # oldest first
        if run.id == anchor.id:
            continue
        theirs = run_settings(run)
        differ = [k for k in sorted(set(mine) | set(theirs)) if k != SEED and _key(mine.get(k)) != _key(theirs.get(k))]
        if not differ:
            repeats.append(run.id)
        elif len(differ) == 1 and differ[0] != SOURCE_RUN:  # run ids make no axis
            groups.setdefault(differ[0], []).append(run.id)
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    return {key: [anchor.id, *repeats, *ids] for key, ids in ordered}


def curve_runs(store, run_ids: Sequence[str], parameter: str | None = None) -> tuple[str | None, list[str]]:
    """The parameter and runs of a curve: ``run_ids`` as given when there are several, or, for one run, the
    runs that differ from it in ``parameter`` alone (None: the setting with the most such runs)."""
    if len(run_ids) != 1:
        return parameter, list(run_ids)
    groups = sibling_groups(store, run_ids[0])
    if not groups:
        raise EffectError(f"no finished run of this method differs from {run_ids[0]} in one setting alone; sweep "
                          f"around it first (shpers sweep --like {run_ids[0]} PARAM VALUE ...)")
    if parameter is None:
        chosen = next(iter(groups))
    else:
        chosen = resolve_setting(parameter, list(groups), set(run_settings(store.get_run(run_ids[0]))))
        if chosen not in groups:
            raise EffectError(f"no finished run differs from {run_ids[0]} in {chosen} alone; some differ from it "
                              f"in {', '.join(groups)} alone")
    return chosen, groups[chosen]


def like_point(store, like: str | None, parameter: str, run_ids: Sequence[str]) -> list[str]:
    """``[like]`` where that run belongs on the curve of a sweep around it (``run_ids``, varying ``parameter``):
    it finished, is of their method, and differs from every one of them in ``parameter`` and the seed alone
    (not where the sweep changed more). At a value the sweep ran with its own seed it would count that seed
    twice, and stays out. Else ``[]``."""
    if not like or not run_ids:
        return []
    run = store.get_run(like)
    others = [store.get_run(r) for r in run_ids]
    if run.status != "finished" or any(o.method != run.method for o in others):
        return []
    differ = [varied_settings([run, other]) for other in others]
    if any(not d for d in differ) or any(k not in (parameter, SEED) for d in differ for k in d):
        return []
    return [run.id]


def _final_val_loss(store, run_id: str) -> float | None:
    lasts = [curve.points[-1][1] for curve in store.curves(run_id, kind="val").values() if curve.points]
    lasts = [v for v in lasts if v is not None and math.isfinite(v)]
    return float(np.mean(lasts)) if lasts else None


def _order(values: list[Any]) -> list[int]:
    """Indices of ``values`` in ascending order when they are all numbers or all bools, else as they came."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numbers or all(isinstance(v, bool) for v in values):
        return sorted(range(len(values)), key=lambda i: values[i])
    return list(range(len(values)))


def _point(store, value: Any, runs: list[RunRecord], metric: str, subset: str) -> EffectPoint:
    finished = [r for r in runs if r.status == "finished"]
    point = EffectPoint(value=value, run_ids=[r.id for r in runs], run_names=[r.label for r in runs],
                        status="finished" if finished else runs[0].status)
    per_run = [store.persona_scores(r.id, metric, subset=subset) for r in finished]
    per_run = [s for s in per_run if s]
    if per_run:
        shared = sorted(set.intersection(*(set(s) for s in per_run)))
        point.scores = {p: float(np.mean([s[p] for s in per_run])) for p in shared}
    if point.scores:
        values = np.array(list(point.scores.values()), dtype=np.float64)
        point.n_personas, point.mean = len(values), float(values.mean())
        point.interval = simultaneous_interval(values, 1)
    losses = [v for v in (_final_val_loss(store, r.id) for r in finished) if v is not None]
    point.val_loss = float(np.mean(losses)) if losses else None
    return point


def parameter_effect(store, run_ids: Sequence[str], parameter: str | None = None, *, metric: str = METRIC,
                     subset: str = "all", defaults: Mapping[str, Any] | None = None) -> ParameterEffect:
    """The curve of ``metric`` over ``subset`` turns against ``parameter`` (None: the one setting the
    runs differ in, the seed aside). ``defaults``: the method's defaults as ``{"group.name": value}``; the
    point at the parameter's default is the reference, else the best-scoring one. Raises
    :class:`EffectError` for runs that make no curve."""
    if subset not in SUBSETS:
        raise EffectError(f"unknown subset {subset!r}; one of {', '.join(SUBSETS)}")
    runs = [store.get_run(r) for r in dict.fromkeys(run_ids)]
    if len(runs) < 2:
        raise EffectError("a curve needs at least two runs")
    methods = sorted({r.method for r in runs})
    if len(methods) > 1:
        raise EffectError(f"the runs are of several methods ({', '.join(methods)}); a curve takes one")
    chosen, varied = _chosen(runs, parameter)
    by_value: dict[str, list[RunRecord]] = {}
    values: dict[str, Any] = {}
    for run in runs:
        value = run_settings(run).get(chosen)
        by_value.setdefault(_key(value), []).append(run)
        values.setdefault(_key(value), value)
    for runs_at in by_value.values():
        mixed = [k for k in varied_settings(runs_at) if k != SEED]
        if mixed:
            raise EffectError(f"at {chosen} = {format_value(run_settings(runs_at[0]).get(chosen))} the runs also "
                              f"differ in {', '.join(mixed)}; only runs that differ in the seed alone pool into "
                              f"one point")
    keys = list(by_value)
    keys = [keys[i] for i in _order([values[k] for k in keys])]
    points = [_point(store, values[k], by_value[k], metric, subset) for k in keys]
    scored = [p for p in points if p.mean is not None]
    default = (defaults or {}).get(chosen)
    reference = next((p for p in scored if default is not None and _key(p.value) == _key(default)), None)
    reason = REFERENCE_DEFAULT
    if reference is None and scored:
        reference, reason = max(scored, key=lambda p: p.mean), REFERENCE_BEST
    if reference is not None:
        reference.is_reference, reference.verdict = True, REFERENCE
        others = [p for p in scored if p is not reference]
        diffs = [paired_diffs(reference.scores, p.scores) for p in others]
        for p, d, (p_holm, interval) in zip(others, diffs, paired_family(diffs)):
            p.diff = float(d.mean()) if d is not None else None
            p.diff_interval, p.p_holm = interval, p_holm
            p.verdict = verdict_of(p.diff, p_holm)
    also = [k for k in varied if k not in (chosen, SEED)]
    return ParameterEffect(method=methods[0], parameter=chosen, metric=metric, subset=subset, points=points,
                           reference_reason=reason, also_varied=also)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _pct(x: float | None, signed: bool = False) -> str:
    return "" if x is None else (f"{x * 100:+.2f}" if signed else f"{x * 100:.2f}")


def _interval(iv: tuple[float, float] | None, signed: bool = False) -> str:
    return "" if iv is None else f"[{_pct(iv[0], signed)}, {_pct(iv[1], signed)}]"


EFFECT_HEADERS = ("value", "runs", "personas", "score %", "95 % CI", "val loss", "vs reference", "simultaneous CI",
           "Holm p", "verdict")


def point_cells(point: EffectPoint) -> list[str]:
    """One point as the cells of :data:`EFFECT_HEADERS` (the reference's comparison cells read "reference")."""
    runs = point.run_names[0] if len(point.run_names) == 1 else f"{len(point.run_names)} runs pooled"
    if point.mean is None:
        return [format_value(point.value), runs, "", f"({point.status})", "", "", "", "", "", "–"]
    loss = "" if point.val_loss is None else f"{point.val_loss:.4f}"
    head = [format_value(point.value), runs, str(point.n_personas), _pct(point.mean), _interval(point.interval), loss]
    if point.is_reference:
        return head + [REFERENCE, "", "", REFERENCE]
    return head + [_pct(point.diff, True), _interval(point.diff_interval, True), format_p(point.p_holm),
                   point.verdict]


def effect_summary(effect: ParameterEffect) -> str:
    """Plain words: which value scored best, and which points differ from the reference."""
    ref = effect.reference
    if ref is None:
        return f"No run of this curve has {effect.metric} scores yet."
    better = [p for p in effect.points if p.p_holm is not None and p.p_holm < ALPHA and (p.diff or 0) > 0]
    worse = [p for p in effect.points if p.p_holm is not None and p.p_holm < ALPHA and (p.diff or 0) < 0]
    best = max((p for p in effect.points if p.mean is not None), key=lambda p: p.mean)
    name = effect.parameter
    best_text = "" if best is ref else f" Best mean: {format_value(best.value)}, {_pct(best.mean)} %."
    lines = [f"Reference: {name} = {format_value(ref.value)} ({effect.reference_reason}), {_pct(ref.mean)} %.{best_text}"]
    compared = [p for p in effect.points if p.p_holm is not None]
    if not compared:
        lines.append("No other value has scores on 2 or more of the reference's personas to pair.")
    elif not better and not worse:
        lines.append(f"No other value differs from it (paired over personas, Holm over {len(compared)} "
                     f"value{'s' if len(compared) != 1 else ''}, p < {ALPHA}).")
    else:
        for label, group in (("Above it", better), ("Below it", worse)):
            if group:
                lines.append(f"{label}: " + "; ".join(
                    f"{format_value(p.value)} ({_pct(p.diff, True)} points, Holm p {format_p(p.p_holm)})"
                    for p in group) + ".")
    if effect.also_varied:
        lines.append(f"The runs also differ in {', '.join(effect.also_varied)}: the curve mixes their effects.")
    return "\n".join(lines)


def effect_markdown(effect: ParameterEffect) -> str:
    """A heading, the points as a Markdown table, and :func:`effect_summary`."""
    turns = {"all": "all turns", "persona_dependent": "persona-dependent turns", "other": "other turns"}
    out = [f"{METRIC_LABELS.get(effect.metric, effect.metric)} against {effect.parameter} ({effect.method}, {turns[effect.subset]})", "",
           "| " + " | ".join(EFFECT_HEADERS) + " |", "|" + "---|" * len(EFFECT_HEADERS)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in point_cells(p)) + " |" for p in effect.points]
    return "\n".join(out) + "\n\n" + effect_summary(effect) + "\n"


def effect_csv(effect: ParameterEffect) -> str:
    """The points as CSV: numbers unformatted, one row per value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([effect.parameter, "run_ids", "n_personas", "mean", "ci_low", "ci_high", "val_loss", "diff",
                "diff_ci_low", "diff_ci_high", "p_holm", "verdict", "reference"])
    for p in effect.points:
        w.writerow([format_value(p.value), ";".join(p.run_ids), p.n_personas or "",
                    *("" if x is None else x for x in (p.mean, *(p.interval or (None, None)), p.val_loss, p.diff,
                                                      *(p.diff_interval or (None, None)), p.p_holm)),
                    p.verdict, "yes" if p.is_reference else ""])
    return buf.getvalue()

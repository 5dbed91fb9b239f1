"""Table 5.1's differences from unified LoRA, one interval per compared row: the app's forest plot
reads :func:`forest_rows`, a terminal gets :func:`forest_text`.

The Markdown table is 23 columns wide; drawn on one axis, which rows overlap zero and which lie far
below it shows at a glance. The values are the table's own (simultaneous 95 % intervals), in points.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from shpers_core.evaluation.table import verdict_of

# Which turns -> the TableRow fields of the difference, its interval and its corrected p-value.
DIFFERENCE_FIELDS = {
    "all": ("diff_vs_unified", "ci_low", "ci_high", "p_holm"),
    "persona_dependent": ("persona_dependent_diff", "persona_dependent_ci_low", "persona_dependent_ci_high",
                          "persona_dependent_p_holm"),
    "other": ("other_diff", "other_ci_low", "other_ci_high", "other_p_holm"),
}
TURNS = {"all": "all turns", "persona_dependent": "persona-dependent turns", "other": "other turns"}
LABEL_CHARS = 46  # run names end alike; their start tells rows apart
BAR_CHARS = 41


class ForestRow(NamedTuple):
    """A compared row's difference from its group's unified run and its interval, in points, and the
    verdict of that subset's corrected p-value."""

    name: str
    diff: float
    low: float
    high: float
    verdict: str


def forest_rows(rows, subset: str = "all") -> list[ForestRow]:
    """The compared rows of ``rows`` (the table's TableRows, in its order) with a difference and interval.

    Baselines and rows without an interval (too few personas) are left out. Where the table has
    several groups (models or datasets), each name starts with its model.
    """
    diff_f, low_f, high_f, p_f = DIFFERENCE_FIELDS[subset]
    several_groups = len({r.group for r in rows}) > 1
    out = []
    for r in rows:
        diff, low, high = getattr(r, diff_f), getattr(r, low_f), getattr(r, high_f)
        if r.is_baseline or diff is None or low is None or high is None:
            continue
        name = f"{r.model}: {r.run_name}" if several_groups else r.run_name
        out.append(ForestRow(name, diff * 100, low * 100, high * 100, verdict_of(diff, getattr(r, p_f))))
    return out


def short_label(text: str, chars: int = LABEL_CHARS) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most six ticks over ``span`` points."""
    for power in range(-2, 4):
        for base in (1, 2, 5):
            step = base * 10.0 ** power
            if span / step <= 6:
                return step
    return 10.0 ** 4


def forest_text(rows, subset: str = "all") -> str:
    """The forest plot in plain text: a line per compared row, ``├──●──┤`` its interval, ``│`` zero."""
    drawn = forest_rows(rows, subset)
    if not drawn:
        return "No row has a unified LoRA run to be compared with.\n"
    lo = min(min(d.low for d in drawn), 0.0)
    hi = max(max(d.high for d in drawn), 0.0)
    span = hi - lo or 1.0

    def column(x: float) -> int:
        return min(BAR_CHARS - 1, max(0, round((x - lo) / span * (BAR_CHARS - 1))))

    zero = column(0.0)
    step = _tick_step(span)
    scale, marks = [" "] * (BAR_CHARS + 4), [" "] * BAR_CHARS
    free_from = 0  # labels may not touch: the next one starts after this column
    for k in range(math.ceil(lo / step), math.floor(hi / step) + 1):
        x = k * step
        text = "0" if k == 0 else f"{x:+g}"
        at = column(x)
        marks[at] = "┴" if k == 0 else "╵"
        start = max(0, at - len(text) // 2)
        if start >= free_from:
            scale[start:start + len(text)] = text
            free_from = start + len(text) + 1
    lines = [f"Difference from unified LoRA over {TURNS[subset]}, points of embedding similarity "
             "(simultaneous 95 % intervals):"]
    for d in drawn:
        bar = [" "] * BAR_CHARS
        left, right = column(d.low), column(d.high)
        for i in range(left, right + 1):
            bar[i] = "─"
        bar[left], bar[right] = "├", "┤"
        bar[zero] = "┼" if left < zero < right else ("│" if bar[zero] == " " else bar[zero])
        bar[column(d.diff)] = "●"
        lines.append(f"{short_label(d.name):{LABEL_CHARS}}  {''.join(bar)}  {d.diff:+6.2f} "
                     f"[{d.low:+.2f}, {d.high:+.2f}]  {d.verdict}")
    lines.append(f"{'':{LABEL_CHARS}}  {''.join(marks).rstrip()}")
    lines.append(f"{'':{LABEL_CHARS}}  {''.join(scale).rstrip()}")
    lines.append("Verdict: the subset's Holm-corrected Wilcoxon p < 0.05, as in the table; an interval (Student t) "
                 "can touch zero where the ranks still differ.")
    return "\n".join(lines) + "\n"

"""The study's questions RQ1-RQ4 answered in plain words from Table 5.1's rows.

Each answer is read off the table's own numbers: each row's difference from its group's unified LoRA
run, its simultaneous interval and its Holm-corrected verdict, over all turns and over the
persona-dependent ones. Nothing is claimed that the table does not show; a question whose rows the
table lacks is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shpers_core.evaluation.forest import DIFFERENCE_FIELDS
from shpers_core.evaluation.table import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    format_p,
    paired_diffs,
    paired_family,
    verdict_of,
)

# (label, the study's question in our words, the methods whose rows answer it)
QUESTIONS = (
    ("RQ1", "does an adapter per persona beat one adapter for everyone (unified LoRA)?", ("per_persona_lora",)),
    ("RQ2", "do cluster adapters, each trained on similar personas' pooled dialogues, beat unified LoRA (and "
            "per-persona LoRA, trained on one persona's)?",
     ("cluster_lora",)),
    ("RQ3", "do merged per-persona adapters (sparse MoE, weighted merges) match unified LoRA (and improve on the "
            "per-persona adapters they merge)?",
     ("sparse_moe", "weighted_merge")),
    ("RQ4", "do prefixes on top of the unified adapter improve on it?", ("static_prefix", "soft_prompt")),
)
PER_PERSONA = "per_persona_lora"
# Questions whose rows are also paired with per-persona LoRA: (what they do with per-persona data, what a row is).
# Pooling (RQ2) and merging (RQ3) are both meant to beat an adapter trained on one persona's few dialogues.
VS_PER_PERSONA = {"RQ2": ("pooling", "cluster row"), "RQ3": ("merging", "merge row")}


@dataclass
class Finding:
    """One question's answer from one group's rows."""

    label: str
    question: str
    answer: str
    """A sentence that starts with the short answer (No. / Yes: / Not shown: / ...)."""
    rows: list[str] = field(default_factory=list)
    """One line per row behind the answer: its difference, interval, p and verdict."""


@dataclass
class GroupFindings:
    """The questions answered for one group of the table: a base model on a dataset."""

    where: str
    """The group in words: the base model and the dataset."""
    answers: list[Finding]
    overall: str
    """Whether any of the questions' rows beat unified LoRA, over any subset of turns."""


NOTHING_TO_ANSWER = ("No study question can be answered: RQ1-RQ4 need per-persona, cluster, merged or prefix rows "
                     "compared with a unified LoRA run of the same model and dataset.")
HEADING = ("What the table answers (differences from unified LoRA in points of embedding similarity, "
           "simultaneous 95 % intervals, Holm-corrected p):")


def _points(x: float) -> str:
    return f"{x * 100:+.2f}"


def _subset(row, subset: str) -> tuple[float | None, float | None, float | None, str]:
    diff_f, low_f, high_f, p_f = DIFFERENCE_FIELDS[subset]
    diff, p = getattr(row, diff_f), getattr(row, p_f)
    return diff, getattr(row, low_f), getattr(row, high_f), verdict_of(diff, p) if subset != "all" else row.verdict


def _row_line(row) -> str:
    diff, low, high, verdict = _subset(row, "all")
    interval = "" if low is None or high is None else f" [{_points(low)}, {_points(high)}]"
    line = f"{row.run_name}: {_points(diff)} points{interval}, p {format_p(row.p_holm)}, {verdict}"
    dep_diff, _, _, dep_verdict = _subset(row, "persona_dependent")
    if dep_diff is not None:
        line += f"; persona-dependent turns {_points(dep_diff)}, {dep_verdict}"
    return line


def _answer(rows) -> str:
    verdicts = [_subset(r, "all")[3] for r in rows]
    tested = [v for v in verdicts if v in (BETTER, WORSE, NO_DIFFERENCE)]
    untested = "" if len(tested) == len(verdicts) else (
        f" {len(verdicts) - len(tested)} row(s) had too few personas in common with it for a test.")
    which = "tested row" if untested else "row"
    if not tested:
        return "Not tested: the rows have too few personas in common with unified LoRA for a paired test."
    better = [r.run_name for r, v in zip(rows, verdicts) if v == BETTER]
    if better:
        return f"Yes: {', '.join(better)} scored above unified LoRA.{untested}"
    dependent = [_subset(r, "persona_dependent")[3] for r in rows]
    better_dependent = [r.run_name for r, v in zip(rows, dependent) if v == BETTER]
    tail = (f" On persona-dependent turns, {', '.join(better_dependent)} scored above it." if better_dependent
            else "")
    highs = [r.ci_high for r, v in zip(rows, verdicts) if r.ci_high is not None and v in tested]
    top = _points(max(highs)) if highs else None
    if all(v == WORSE for v in tested):
        bound = f" Every interval ends below zero, at {top} points at most." if top and max(highs) < 0 else ""
        return f"No: every {which} scored below unified LoRA.{bound}{tail}{untested}"
    bound = f" No interval reaches above {top} points: a larger gain is ruled out." if top else ""
    if all(v == NO_DIFFERENCE for v in tested):
        return f"Not shown: no {which} differs from unified LoRA at this size.{bound}{tail}{untested}"
    worse = sum(v == WORSE for v in tested)
    return (f"No row beat unified LoRA: {worse} of {len(tested)} {which}s scored below it, the others showed "
            f"no difference.{bound}{tail}{untested}")


def findings(rows) -> list[GroupFindings]:
    """RQ1-RQ4 for each group of ``rows`` (the table's TableRows) with a unified LoRA baseline and rows
    that answer at least one question."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    out = []
    for members in groups.values():
        baseline = next((r for r in members if r.is_baseline), None)
        if baseline is None:
            continue
        answers = []
        for label, question, methods in QUESTIONS:
            answering = [r for r in members if r.method in methods and not r.is_baseline and r.diff_vs_unified is not None]
            if not answering:
                continue
            finding = Finding(label, question, _answer(answering), [_row_line(r) for r in answering])
            if label in VS_PER_PERSONA:
                _add_per_persona_test(finding, answering, members, baseline, *VS_PER_PERSONA[label])
            answers.append(finding)
        if answers:
            out.append(GroupFindings(f"{baseline.model} on dataset {baseline.dataset}", answers,
                                     _overall(members, baseline)))
    return out


def _add_per_persona_test(finding: Finding, answering, members, baseline, doing: str, row: str) -> None:
    """Does ``doing`` (pooling, merging) beat an adapter per persona?

    Each of ``answering`` is paired with the group's per-persona LoRA row over the personas both scored
    (Wilcoxon, Holm over these rows, simultaneous Student t intervals), as the table pairs rows with
    unified LoRA.
    """
    per_persona = next((r for r in members if r.method == PER_PERSONA and r.mean is not None), None)
    if per_persona is None:
        return
    tested = [r for r in answering if r.mean is not None]
    diffs = [paired_diffs(per_persona.persona_scores.get("all", {}), r.persona_scores.get("all", {}))
             for r in tested]
    family = sum(d is not None for d in diffs)
    verdicts: dict[str, list[str]] = {}
    for r, d, (p, interval) in zip(tested, diffs, paired_family(diffs)):
        diff = r.mean - per_persona.mean
        verdict = verdict_of(diff, p)
        verdicts.setdefault(verdict, []).append(r.run_name)
        shown = "" if interval is None else f" [{_points(interval[0])}, {_points(interval[1])}]"
        line = (f"{r.run_name} vs {per_persona.run_name}: {_points(diff)} points{shown}, "
                f"p {format_p(p)}, {verdict}")
        if d is not None and not np.any(np.abs(d) > 1e-9):
            # E.g. a merge of adapters that barely moved: say so rather than print a zero-width interval.
            line = f"{r.run_name} vs {per_persona.run_name}: the same score on each of the {len(d)} personas"
        if baseline.mean is not None:
            line += (f"; means {r.mean * 100:.2f}, per-persona {per_persona.mean * 100:.2f}, "
                     f"unified {baseline.mean * 100:.2f}")
        finding.rows.append(line)
    if not family:
        return
    holm_over = f"paired over personas, Holm over {family} {row}{'s' if family > 1 else ''}"
    if verdicts.get(BETTER):
        below = f"; {', '.join(verdicts[WORSE])} scored below it" if verdicts.get(WORSE) else ""
        finding.answer += (f" {doing.capitalize()} did help against per-persona LoRA ({holm_over}): "
                           f"{', '.join(verdicts[BETTER])} scored above it{below}.")
    elif verdicts.get(WORSE):
        finding.answer += (f" Against per-persona LoRA ({holm_over}), {', '.join(verdicts[WORSE])} scored "
                           f"below it: {doing} did not help.")
    else:
        finding.answer += f" Against per-persona LoRA ({holm_over}), no {row} differs at this size."


def findings_text(rows) -> str:
    """:func:`findings` as plain text: a heading per group, then each question, its answer and its rows."""
    found = findings(rows)
    if not found:
        return NOTHING_TO_ANSWER + "\n"
    lines = [HEADING]
    for group in found:
        if len(found) > 1:
            lines.append(f"\n{group.where}:")
        for f in group.answers:
            lines.append(f"- {f.label}, {f.question} {f.answer}")
            lines += [f"    {line}" for line in f.rows]
        lines.append(group.overall)
    return "\n".join(lines) + "\n"


def findings_markdown(rows) -> str:
    """:func:`findings` as Markdown: each question a bullet (its label in bold), its rows nested under it."""
    found = findings(rows)
    if not found:
        return NOTHING_TO_ANSWER + "\n"
    lines = [HEADING, ""]
    for group in found:
        if len(found) > 1:
            lines += [f"**{group.where}**", ""]
        for f in group.answers:
            lines.append(f"- **{f.label}**, {f.question} {f.answer}")
            lines += [f"  - {line}" for line in f.rows]
        lines += ["", group.overall, ""]
    return "\n".join(lines)


def _overall(members, baseline) -> str:
    methods = {m for _, _, ms in QUESTIONS for m in ms}
    beat = sorted({f"{r.run_name} ({subset.replace('_', '-')} turns)" for r in members
                   if r.method in methods and not r.is_baseline
                   for subset in DIFFERENCE_FIELDS if _subset(r, subset)[3] == BETTER})
    on = f" on {baseline.n_personas} personas"  # few personas make wide intervals: say how many
    if not beat:
        return (f"No personalisation method beat unified LoRA{on}, over all turns, persona-dependent turns or "
                "the others.")
    return f"Above unified LoRA{on}: {'; '.join(beat)}."

"""The study's Table 5.1, regenerated from the run store, as Markdown or CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass


@dataclass
class TableRow:
    label: str
    run_id: str
    method: str
    status: str
    n_personas: int
    mean: float | None
    std: float | None
    diff_vs_unified: float | None
    min: float | None
    max: float | None
    persona_dependent: float | None
    other: float | None
    device_precision: float | None
    parameter_f1: float | None
    numerical_precision: float | None
    trainable_params: int | None
    train_seconds: float | None


def study_rows(store, run_ids: list[str] | None = None) -> list[TableRow]:
    """One row per run (newest first when ``run_ids`` is None), every number read from the store."""
    runs = [store.get_run(r) for r in run_ids] if run_ids else store.list_runs()
    rows = []
    for run in runs:
        # Scores only for a finished run: one whose evaluation was cut short shows none.
        scored = run.status == "finished"
        m = store.metrics(run.id, subset="all") if scored else {}
        dep = store.metrics(run.id, subset="persona_dependent") if scored else {}
        other = store.metrics(run.id, subset="other") if scored else {}
        rows.append(TableRow(
            label=run.name or run.method, run_id=run.id, method=run.method, status=run.status,
            n_personas=len(run.personas), mean=m.get("embedding_similarity"),
            std=m.get("embedding_similarity_std"), diff_vs_unified=None,
            min=m.get("embedding_similarity_min"), max=m.get("embedding_similarity_max"),
            persona_dependent=dep.get("embedding_similarity"), other=other.get("embedding_similarity"),
            device_precision=m.get("device_precision"), parameter_f1=m.get("parameter_f1"),
            numerical_precision=m.get("numerical_precision"), trainable_params=run.trainable_params,
            train_seconds=run.duration_s,
        ))
    unified = next((r for r in rows if r.method == "unified_lora" and r.mean is not None), None)
    for r in rows:
        if unified is not None and r.mean is not None:
            r.diff_vs_unified = r.mean - unified.mean
    return rows


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.2f}" if signed else f"{x * 100:.2f}"


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


HEADERS = ["Method", "Emb. sim. % (mean ± std)", "vs unified", "min–max", "persona-dep.", "other",
           "Device P", "Param F1", "Num. P", "Parameters", "Train time", "Run"]


def row_cells(r: TableRow) -> list[str]:
    if r.mean is None:
        sim = f"({r.status})"
    else:
        sim = f"{_pct(r.mean)} ± {_pct(r.std)}"
    return [r.label, sim, _pct(r.diff_vs_unified, signed=True) if r.method != "unified_lora" else "baseline",
            f"{_pct(r.min)}–{_pct(r.max)}", _pct(r.persona_dependent), _pct(r.other), _pct(r.device_precision),
            _pct(r.parameter_f1), _pct(r.numerical_precision), _params(r.trainable_params),
            _duration(r.train_seconds), r.run_id]


def to_markdown(rows: list[TableRow]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[TableRow]) -> str:
    buf = io.StringIO()
    fields = list(asdict(rows[0]).keys()) if rows else [f for f in TableRow.__dataclass_fields__]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buf.getvalue()

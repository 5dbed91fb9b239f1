"""Writing a run's results: curve points, metrics, per-persona scores, predictions, artefacts, log lines.

A mixin of :class:`~shpers_core.store.runstore.RunStore`, which owns the connection, its
transactions and the id resolution these methods use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shpers_core.names import to_stored
from shpers_core.store import schema
from shpers_core.store.host import now_iso
from shpers_core.store.records import (
    to_json,
    to_real,
)

_PREDICTION_KEYS = frozenset({"persona_id", "dialogue_id", "turn", "history", "prediction", "reference",
                              "persona_dependent", "scores"})


class ResultWrites:
    def add_curve_points(self, run_id: str, rows: Iterable[tuple[str, str, int, float]]) -> None:
        """Append (series, kind, step, value) points; a step logged again (after a resume) replaces the old point."""
        rows = list(rows)
        for row in rows:
            if row[1] not in schema.CURVE_KINDS:
                raise ValueError(f"curve kind must be one of {schema.CURVE_KINDS}, not {row[1]!r}")
        if not rows:
            return
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["curves"].insert_all(
                ({"run_id": rid, "series": str(s), "kind": k, "step": int(step), "value": to_real(v)}
                 for s, k, step, v in rows), replace=True, batch_size=500)

    def set_metrics(self, run_id: str, values: Mapping[str, float], subset: str = "all") -> None:
        """Set run-level metrics of one subset, replacing earlier values of the same names."""
        check_subset(subset)
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["metrics"].insert_all(
                ({"run_id": rid, "subset": subset, "name": str(n), "value": to_real(v)} for n, v in values.items()),
                replace=True)

    def add_persona_scores(self, run_id: str, rows: Iterable[Mapping[str, Any] | tuple[str, str, str, float]]) -> None:
        """Per-persona scores: ``(persona_id, metric, subset, value)`` tuples or dicts with those keys
        (``subset`` defaults to "all"). Scoring the same persona and metric again replaces the value."""
        records = []
        for row in rows:
            if isinstance(row, Mapping):
                pid, metric, subset, value = row["persona_id"], row["metric"], row.get("subset", "all"), row["value"]
            else:
                pid, metric, subset, value = row
            check_subset(subset)
            records.append({"persona_id": str(pid), "metric": metric, "subset": subset, "value": to_real(value)})
        if not records:
            return
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["persona_scores"].insert_all(({"run_id": rid, **r} for r in records), replace=True, batch_size=500)

    def add_predictions(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Generated replies, one dict per turn: persona_id, dialogue_id, turn, history, prediction,
        reference, persona_dependent (optional), scores (optional dict). Other keys are per-turn
        metric values and join ``scores``. A (persona, dialogue, turn) stored again is replaced."""
        records = []
        for row in rows:
            scores = dict(row.get("scores") or {})
            scores.update({k: v for k, v in row.items() if k not in _PREDICTION_KEYS})
            dependent = row.get("persona_dependent")
            records.append({
                "persona_id": str(row["persona_id"]), "dialogue_id": str(row["dialogue_id"]), "turn": int(row["turn"]),
                "history": to_json(list(row.get("history") or [])), "prediction": row.get("prediction", ""),
                "reference": row.get("reference", ""), "persona_dependent": None if dependent is None else int(bool(dependent)),
                "scores": to_json(scores),
            })
        if not records:
            return
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["predictions"].insert_all(({"run_id": rid, **r} for r in records), replace=True, batch_size=200)

    def add_artefact(self, run_id: str, kind: str, path: str | Path, persona_id: str | None = None) -> int:
        """Record a file or folder the run made; the same (kind, path) again replaces the entry. Returns its id."""
        with self.transaction():
            rid = self.resolve_id(run_id)
            table = self.db["artefacts"]
            table.insert({"run_id": rid, "kind": kind, "path": to_stored(self.root, path), "persona_id": persona_id,
                          "created_at": now_iso()}, replace=True)
            return int(table.last_pk)

    def log(self, run_id: str, message: str, level: str = "info") -> None:
        self.add_log_lines(run_id, [(now_iso(), level, message)])

    def add_log_lines(self, run_id: str, lines: Iterable[tuple[str, str, str]]) -> None:
        """Append (ts, level, message) job log lines."""
        lines = list(lines)
        if not lines:
            return
        with self.transaction():
            rid = self.resolve_id(run_id)
            self.db["events_log"].insert_all(
                {"run_id": rid, "ts": ts, "level": level, "message": str(msg)} for ts, level, msg in lines)


def check_status(status: str) -> None:
    if status not in schema.STATUSES:
        raise ValueError(f"run status must be one of {schema.STATUSES}, not {status!r}")


def check_subset(subset: str) -> None:
    if subset not in schema.SUBSETS:
        raise ValueError(f"metric subset must be one of {schema.SUBSETS}, not {subset!r}")

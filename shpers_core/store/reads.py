"""Reading runs back: records, curves, metrics, scores, predictions, artefacts and log lines.

A mixin of :class:`~shpers_core.store.runstore.RunStore` (see :mod:`shpers_core.store.results`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from shpers_core.names import from_stored
from shpers_core.store import schema
from shpers_core.store.errors import StoreError
from shpers_core.store.records import (
    Artefact,
    Curve,
    LogLine,
    Prediction,
    RunRecord,
    from_real,
)

_RUN_COLUMNS = tuple(f for f in RunRecord.__dataclass_fields__)


class RunReads:
    def get_run(self, run_id: str) -> RunRecord:
        rid = self.resolve_id(run_id)
        return RunRecord.from_row(self._select(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?", [rid])[0])

    def list_runs(self, status: str | Iterable[str] | None = None, method: str | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally only those with the given status(es) and method."""
        where, args = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                if s not in schema.STATUSES:
                    raise StoreError(f"unknown run status '{s}'; one of {', '.join(schema.STATUSES)}")
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if method is not None:
            where.append("method = ?")
            args.append(method)
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [RunRecord.from_row(r) for r in self._select(sql + " ORDER BY created_at DESC, rowid DESC", args)]

    def curves(self, run_id: str, kind: str | None = None) -> dict[str, Curve]:
        """Each series' points in step order, keyed by series name.

        A series name used for both kinds (a trainer naming train and val curves alike) comes
        back as two keys, ``"<series>/train"`` and ``"<series>/val"``.
        """
        rid = self.resolve_id(run_id)
        sql, args = "SELECT series, kind, step, value FROM curves WHERE run_id = ?", [rid]
        if kind is not None:
            sql, args = sql + " AND kind = ?", args + [kind]
        grouped: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in self._select(sql + " ORDER BY series, kind, step", args):
            grouped.setdefault((r["series"], r["kind"]), []).append((r["step"], from_real(r["value"])))
        names = [series for series, _ in grouped]
        return {(f"{series}/{k}" if names.count(series) > 1 else series): Curve(k, points)
                for (series, k), points in grouped.items()}

    def metrics(self, run_id: str, subset: str | None = None) -> dict[str, Any]:
        """``{name: value}`` of one subset, or ``{subset: {name: value}}`` when ``subset`` is None."""
        rid = self.resolve_id(run_id)
        rows = self._select("SELECT subset, name, value FROM metrics WHERE run_id = ? ORDER BY subset, name", [rid])
        if subset is not None:
            return {r["name"]: from_real(r["value"]) for r in rows if r["subset"] == subset}
        out: dict[str, dict[str, float]] = {}
        for r in rows:
            out.setdefault(r["subset"], {})[r["name"]] = from_real(r["value"])
        return out

    def persona_scores(self, run_id: str, metric: str = "embedding_similarity", subset: str = "all") -> dict[str, float]:
        rid = self.resolve_id(run_id)
        rows = self._select("SELECT persona_id, value FROM persona_scores WHERE run_id = ? AND metric = ? AND subset = ? "
                            "ORDER BY persona_id", [rid, metric, subset])
        return {r["persona_id"]: from_real(r["value"]) for r in rows}

    def predictions(self, run_id: str, persona_id: str | None = None) -> list[Prediction]:
        rid = self.resolve_id(run_id)
        sql, args = "SELECT * FROM predictions WHERE run_id = ?", [rid]
        if persona_id is not None:
            sql, args = sql + " AND persona_id = ?", args + [persona_id]
        out = []
        for r in self._select(sql + " ORDER BY persona_id, dialogue_id, turn", args):
            dep = r["persona_dependent"]
            out.append(Prediction(r["persona_id"], r["dialogue_id"], r["turn"], json.loads(r["history"] or "[]"),
                                  r["prediction"] or "", r["reference"] or "", None if dep is None else bool(dep),
                                  json.loads(r["scores"] or "{}")))
        return out

    def artefacts(self, run_id: str, kind: str | None = None) -> list[Artefact]:
        rid = self.resolve_id(run_id)
        sql, args = "SELECT id, kind, path, persona_id, created_at FROM artefacts WHERE run_id = ?", [rid]
        if kind is not None:
            sql, args = sql + " AND kind = ?", args + [kind]
        return [Artefact(r["id"], r["kind"], from_stored(self.root, r["path"]), r["persona_id"], r["created_at"])
                for r in self._select(sql + " ORDER BY id", args)]

    def logs(self, run_id: str, after_id: int = 0) -> list[LogLine]:
        """The run's log lines in order; ``after_id`` (a previous line's id) reads only newer ones."""
        rid = self.resolve_id(run_id)
        return [LogLine(r["id"], r["ts"], r["level"], r["message"]) for r in self._select(
            "SELECT id, ts, level, message FROM events_log WHERE run_id = ? AND id > ? ORDER BY id", [rid, after_id])]

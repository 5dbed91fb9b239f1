"""What the store's reads return: plain dataclasses with JSON columns already decoded."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``. Timestamps are ISO 8601 UTC text; ``params`` and ``personas`` are decoded."""

    id: str
    method: str
    status: str
    created_at: str
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    base_model: str = ""
    dataset_path: str = ""
    dataset_hash: str = ""
    personas: list[str] = field(default_factory=list)
    seed: int = 0
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    trainable_params: int | None = None
    code_version: str | None = None
    host: str | None = None
    pid: int | None = None
    heartbeat_at: str | None = None
    parent_run_id: str | None = None
    notes: str = ""
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        row = dict(row)
        row["params"] = json.loads(row["params"] or "{}")
        row["personas"] = json.loads(row["personas"] or "[]")
        row["tags"] = json.loads(row.get("tags") or "[]")
        return cls(**row)

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Curve:
    """One series of a run: ``kind`` is "train" or "val"; points are (step, value) in step order."""

    kind: str
    points: list[tuple[int, float]]

    @property
    def steps(self) -> list[int]:
        return [p[0] for p in self.points]

    @property
    def values(self) -> list[float]:
        return [p[1] for p in self.points]


@dataclass(frozen=True)
class Prediction:
    persona_id: str
    dialogue_id: str
    turn: int
    history: list[Any]
    prediction: str
    reference: str
    persona_dependent: bool | None
    scores: dict[str, float]


@dataclass(frozen=True)
class Artefact:
    """A file or folder a run produced; ``persona_id`` is None for a run-wide artefact."""

    id: int
    kind: str
    path: Path
    persona_id: str | None
    created_at: str


@dataclass(frozen=True)
class LogLine:
    id: int
    ts: str
    level: str
    message: str


def to_json(value: Any) -> str:
    """JSON text of params, personas, histories and scores; refuses what would not round-trip."""
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot store value as JSON: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def to_real(value: Any) -> float | None:
    # SQLite turns NaN into NULL on its own; doing it here keeps the round trip explicit.
    v = float(value)
    return None if math.isnan(v) else v


def from_real(value: float | None) -> float:
    return math.nan if value is None else value

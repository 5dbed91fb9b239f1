"""A run's stored reply to each test turn, paired with a second run's, and ranked by where it scored lowest.

What the CLI's ``shpers runs replies`` and the app's Grid read: both show the same turns in the same
order. Works on the store's prediction records (anything with ``persona_id``, ``dialogue_id``,
``turn`` and a ``scores`` mapping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SUBSETS = {"all": None, "persona_dependent": True, "other": False}
"""Which turns each subset keeps, by their ``persona_dependent`` flag (None: every turn)."""


@dataclass(frozen=True)
class TurnReplies:
    """One test turn: the run's stored reply and, when a second run is shown beside it, that run's."""

    mine: Any
    beside: Any | None = None


def turn_key(prediction) -> tuple[str, str, int]:
    return prediction.persona_id, prediction.dialogue_id, prediction.turn


def pair_replies(mine: list, beside: list, subset: str = "all") -> list[TurnReplies]:
    """``mine``'s turns of ``subset`` in their stored order, each with ``beside``'s reply to the same turn."""
    flag = SUBSETS[subset]
    theirs = {turn_key(p): p for p in beside}
    return [TurnReplies(p, theirs.get(turn_key(p))) for p in mine if flag is None or p.persona_dependent is flag]


def turn_score(prediction, metric: str) -> float | None:
    """The turn's ``metric`` score; None when there is no prediction or no finite score."""
    value = prediction.scores.get(metric) if prediction is not None else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def lowest_first(rows: list[TurnReplies], metric: str, against_beside: bool) -> list[TurnReplies]:
    """``rows`` with the lowest ``metric`` first, or the lowest against the reply beside it (A − B);
    turns without both scores go last, in their stored order."""
    def key(row: TurnReplies) -> tuple[int, float]:
        a = turn_score(row.mine, metric)
        b = turn_score(row.beside, metric) if against_beside else 0.0
        return (1, 0.0) if a is None or b is None else (0, a - b)

    return sorted(rows, key=key)


def message_role(message) -> str:
    """A stored history message's role: a dict as the store reads it back, or a :class:`Message`."""
    return str(message.get("role", "") if isinstance(message, dict) else getattr(message, "role", ""))


def message_text(message) -> str:
    """A stored history message's text ("content" in chat-format records)."""
    if isinstance(message, dict):
        return str(message.get("text") or message.get("content") or "")
    return str(getattr(message, "text", ""))

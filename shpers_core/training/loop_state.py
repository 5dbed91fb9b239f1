"""The loop state both trainers keep: one adapter's progress (:class:`LoopState`) and the tokens,
padding and seconds a loop has spent (:class:`Spent`).

Typed in the loop; a dict only at the checkpoint boundary (``state.json``). ``fit`` writes one
adapter's fields under their own names (``step``, ``train_curve``, ...); the batched trainer writes
one list per field, an entry per adapter (``steps``, ``train_curves``, ...). Those key names are what
checkpoints on disk hold, so they never change; a missing key takes the field's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

# Field -> the key of its per-adapter list in a batched checkpoint.
_COLUMNS = {"step": "steps", "train_curve": "train_curves", "val_curve": "val_curves", "best_val": "best_val",
            "bad_epochs": "bad_epochs", "stopped_early": "stopped"}


def _curve(points) -> list[tuple[int, float]]:
    # JSON turns the (step, loss) tuples into lists.
    return [(int(step), float(loss)) for step, loss in points]


@dataclass
class LoopState:
    """One adapter's progress through its training."""

    step: int = 0
    """Optimiser steps taken."""
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) per step."""
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, validation loss) per epoch."""
    best_val: float = math.inf
    bad_epochs: int = 0
    """Validations in a row without a new best."""
    stopped_early: bool = False

    def record_step(self, loss: float) -> None:
        self.step += 1
        self.train_curve.append((self.step, loss))

    def record_validation(self, loss: float, patience: int) -> bool:
        """Add an epoch's validation loss; True when it is a new best. ``patience`` validations in a
        row without one stop the adapter early (0: never)."""
        self.val_curve.append((self.step, loss))
        if loss < self.best_val - 1e-6:
            self.best_val, self.bad_epochs = loss, 0
            return True
        self.bad_epochs += 1
        if patience and self.bad_epochs >= patience:
            self.stopped_early = True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        """The state ``to_dict`` wrote (other keys of the checkpoint are ignored)."""
        state = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        state.train_curve, state.val_curve = _curve(state.train_curve), _curve(state.val_curve)
        return state

    @staticmethod
    def to_columns(states: list[LoopState]) -> dict[str, list]:
        """Several adapters' states as a batched checkpoint holds them: one list per field."""
        return {key: [getattr(s, name) for s in states] for name, key in _COLUMNS.items()}

    @staticmethod
    def from_columns(data: dict[str, Any]) -> list[LoopState]:
        """The adapters' states from :meth:`to_columns`'s lists."""
        count = len(data[_COLUMNS["step"]])
        return [LoopState.from_dict({name: data[key][a] for name, key in _COLUMNS.items() if key in data})
                for a in range(count)]


@dataclass
class Spent:
    """What a training loop has spent so far (for its throughput figures)."""

    tokens: int = 0
    """Real (unpadded) tokens trained on."""
    padded: int = 0
    """Padding positions the forward passes computed beside them."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spent:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

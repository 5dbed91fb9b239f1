"""Stop training when the loss stops being a number, before a NaN adapter can be saved."""

from __future__ import annotations

import math

from shpers_core.errors import UserError


class LossDiverged(UserError):
    """The training loss became NaN or infinite; the job fails and saves no adapter."""


def check_loss(value: float, step: int, series: str = "train") -> None:
    """Raise :class:`LossDiverged` naming ``step`` when ``value`` is NaN or infinite."""
    if not math.isfinite(value):
        raise LossDiverged(f"training loss became {value} at step {step} ({series}); the run was stopped and no "
                           "adapter saved: lower train.learning_rate or check the data")

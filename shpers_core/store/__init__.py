"""The run store: runs, curves, metrics, persona scores, predictions, artefacts and logs in SQLite."""

from shpers_core.store.errors import StoreError
from shpers_core.store.records import Artefact, Curve, LogLine, Prediction, RunRecord
from shpers_core.store.runstore import BUSY_TIMEOUT_S, RunStore, new_run_id
from shpers_core.store.schema import (
    CANCELLED,
    CURVE_KINDS,
    FAILED,
    FINISHED,
    INTERRUPTED,
    RESUMABLE_STATUSES,
    RUNNING,
    STATUSES,
    SUBSETS,
    TERMINAL_STATUSES,
    latest_version,
)
from shpers_core.store.sink import StoreSink

__all__ = [
    "BUSY_TIMEOUT_S", "CURVE_KINDS", "STATUSES", "SUBSETS", "TERMINAL_STATUSES", "RESUMABLE_STATUSES",
    "RUNNING", "FINISHED", "FAILED", "CANCELLED", "INTERRUPTED",
    "Artefact", "Curve", "LogLine", "Prediction", "RunRecord", "RunStore", "StoreError", "StoreSink",
    "latest_version", "new_run_id",
]

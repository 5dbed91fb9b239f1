"""Jobs a closing window leaves behind, kept in the workspace and offered again when it next opens.

Closing the app with a sweep half done should not lose the sweep: the running job stops at a
checkpoint and resumes, the waiting ones queue again, once the user agrees, and when the last of them
ends the sweep's runs are selected as if the window had stayed open.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from shpers_core.atomic import atomic_write_text
from shpers_core.errors import UserError
from shpers_core.jobs.spec import JobSpec

FILE_NAME = "pending-jobs.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingSweep:
    """The sweep a pending job belongs to, so that its end still selects all its runs after a restart."""

    number: int
    """Tells the sweeps of one file apart."""
    parameter: str
    loaded_run: str = ""
    """The run whose settings the sweep started from (Run again with changes…); empty when none."""
    finished: tuple[str, ...] = ()
    """Runs of the sweep that had finished before the window closed."""


@dataclass(frozen=True)
class PendingJob:
    spec: JobSpec
    run_id: str = ""
    """The run a job that had started continues; empty for one that never started."""
    sweep: PendingSweep | None = None
    builds_on: int | None = None
    """For a study's merge or prefix, the index in the same list of the job of the row it builds on
    (see ``Job.builds_on``); None when it names its source already or has none."""


def _sweep_entry(sweep: PendingSweep | None) -> dict | None:
    if sweep is None:
        return None
    return {"number": sweep.number, "parameter": sweep.parameter, "loaded_run": sweep.loaded_run,
            "finished": list(sweep.finished)}


def _sweep_of(entry) -> PendingSweep | None:
    """The sweep an entry names; anything else (none, or written by hand) is no sweep: the job still queues."""
    if not isinstance(entry, dict) or not isinstance(entry.get("parameter"), str):
        return None
    finished = entry.get("finished")
    number = entry.get("number")
    return PendingSweep(number if isinstance(number, int) else 0, entry["parameter"], str(entry.get("loaded_run") or ""),
                        tuple(str(r) for r in finished) if isinstance(finished, list) else ())


def pending_path(workspace_root: Path) -> Path:
    return Path(workspace_root) / FILE_NAME


def save_pending(workspace_root: Path, jobs: list[PendingJob]) -> None:
    """Write ``jobs`` for the next window on this workspace (none: remove the file)."""
    path = pending_path(workspace_root)
    if not jobs:
        path.unlink(missing_ok=True)
        return
    atomic_write_text(path, json.dumps([{"spec": j.spec.to_dict(), "run_id": j.run_id, "sweep": _sweep_entry(j.sweep),
                                         "builds_on": j.builds_on} for j in jobs], indent=1))


def read_pending(workspace_root: Path) -> list[PendingJob]:
    """The jobs the last window left; an entry that no longer reads as a job (edited by hand, written by
    another version) is logged and left out."""
    path = pending_path(workspace_root)
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return []
    jobs = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            spec = JobSpec.from_dict(dict(entry["spec"]))
            builds_on = entry.get("builds_on")
            jobs.append(PendingJob(spec, str(entry.get("run_id") or ""), _sweep_of(entry.get("sweep")),
                                   builds_on if isinstance(builds_on, int) and not isinstance(builds_on, bool) else None))
        except (UserError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a job in %s: %s", path, exc)
    return jobs

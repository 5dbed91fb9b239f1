"""Jobs a closing window leaves behind, kept in the workspace and offered again when it next opens.

Closing the app with a sweep half done should not lose the sweep: the running job stops at a
checkpoint and resumes, the waiting ones queue again, once the user agrees.
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
class PendingJob:
    spec: JobSpec
    run_id: str = ""
    """The run a job that had started continues; empty for one that never started."""


def pending_path(workspace_root: Path) -> Path:
    return Path(workspace_root) / FILE_NAME


def save_pending(workspace_root: Path, jobs: list[PendingJob]) -> None:
    """Write ``jobs`` for the next window on this workspace (none: remove the file)."""
    path = pending_path(workspace_root)
    if not jobs:
        path.unlink(missing_ok=True)
        return
    atomic_write_text(path, json.dumps([{"spec": j.spec.to_dict(), "run_id": j.run_id} for j in jobs], indent=1))


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
            jobs.append(PendingJob(JobSpec.from_dict(dict(entry["spec"])), str(entry.get("run_id") or "")))
        except (UserError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a job in %s: %s", path, exc)
    return jobs

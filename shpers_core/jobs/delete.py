"""Delete runs for good: their rows and their folder, in an order a crash cannot leave half-done.

A delete marks the run ``deleting``, removes its files, then its rows. A delete cut short (a kill,
a power loss) leaves a ``deleting`` run, which :func:`finish_pending_deletes` completes the next
time the workspace is opened by the command line or the app, or by ``shpers workspace clean``.
Nothing outside the run's folder is ever removed: a path recorded outside it is reported instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shpers_core.errors import UserError
from shpers_core.store import RunStore
from shpers_core.store.records import RunRecord
from shpers_core.workspace import Workspace

MIN_PREFIX = 6


@dataclass
class DeletePlan:
    """What deleting one run removes, how much disk that frees, and which runs were built on it."""

    run: RunRecord
    folder: Path
    size_bytes: int
    files: int
    dependents: list[RunRecord] = field(default_factory=list)
    outside: list[Path] = field(default_factory=list)
    """Recorded artefacts outside the run's folder (written before names were made safe): left alone."""

    def describe(self) -> str:
        """Several lines for a confirmation: what goes, disk freed, dependents."""
        run = self.run
        label = f"{run.id} ({run.name or run.method}, {run.status})"
        lines = [f"delete run {label}: its rows and its folder {self.folder} "
                 f"({self.files} files, frees {human_size(self.size_bytes)})"]
        if self.dependents:
            shown = ", ".join(f"{d.id} ({d.name or d.method})" for d in self.dependents)
            lines.append(f"runs built on it (they keep their results but cannot be resumed or rebuilt): {shown}")
        for path in self.outside:
            lines.append(f"outside its run folder, not removed: {path}")
        return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``, symlinks counted as links, never followed."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def resolve_run_id(store: RunStore, run_id: str, *, confirmed: bool) -> str:
    """The full id for ``run_id``; a prefix shorter than :data:`MIN_PREFIX` only with a confirmation to come."""
    full = store.resolve_id(run_id)
    if full != run_id and len(run_id) < MIN_PREFIX and confirmed:
        raise UserError(f"run id prefix '{run_id}' is too short to delete without asking: give at least "
                        f"{MIN_PREFIX} characters of the id ({full}), or leave out --yes")
    return full


def dependents_of(store: RunStore, run_id: str) -> list[RunRecord]:
    """Runs built on ``run_id`` (merges on per-persona adapters, prefixes on a unified adapter)."""
    return [r for r in store.list_runs() if r.parent_run_id == run_id]


def plan_delete(workspace: Workspace, store: RunStore, run_id: str) -> DeletePlan:
    """What :func:`delete_run` would remove; raises :class:`UserError` for a running run."""
    run = store.get_run(run_id)
    if run.status == "running":
        raise UserError(f"run {run.id} is running; cancel it first with `shpers runs cancel {run.id}`")
    folder = workspace.run_dir(run.id)
    size, files = folder_size(folder) if folder.is_dir() else (0, 0)
    outside = []
    for art in store.artefacts(run.id):
        if not _inside(folder, art.path) and os.path.lexists(art.path):
            outside.append(art.path)
    return DeletePlan(run, folder, size, files, dependents_of(store, run.id), outside)


def delete_run(workspace: Workspace, store: RunStore, run_id: str) -> DeletePlan:
    """Mark the run deleting, remove its folder (and recorded files inside the workspace), then its rows."""
    plan = plan_delete(workspace, store, run_id)
    store.set_status(plan.run.id, "deleting")
    _remove_files(workspace, store, plan.run.id)
    store.delete_run(plan.run.id)
    return plan


def _remove_files(workspace: Workspace, store: RunStore, run_id: str) -> None:
    # Only what lies in the run's own folder: an old artefact path that escaped it (a persona id
    # like "../x" before names were made safe) may now hold someone else's files.
    _remove(workspace.run_dir(run_id))


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"cannot remove {path}: {exc.strerror or exc}; the run stays marked 'deleting' and "
                        "`shpers workspace clean` finishes it") from None


def _inside(root: Path, path: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def finish_pending_deletes(workspace: Workspace, store: RunStore) -> list[str]:
    """Complete every delete that was cut short (runs left ``deleting``); returns their ids."""
    done = []
    for run in store.list_runs(status="deleting"):
        _remove_files(workspace, store, run.id)
        store.delete_run(run.id)
        done.append(run.id)
    return done


def orphan_folders(workspace: Workspace, store: RunStore) -> list[Path]:
    """Folders under ``runs/`` that belong to no run in the store."""
    runs_dir = workspace.runs_dir
    if not runs_dir.is_dir():
        return []
    known = {r.id for r in store.list_runs()}
    return sorted(p for p in runs_dir.iterdir() if p.name not in known)


def clean_workspace(workspace: Workspace, store: RunStore, *, remove_orphans: bool) -> tuple[list[str], list[Path], int]:
    """Finish cut-short deletes, then list (or remove) orphan run folders.

    Returns (finished run ids, orphan folders, bytes they hold).
    """
    finished = finish_pending_deletes(workspace, store)
    orphans = orphan_folders(workspace, store)
    size = sum(folder_size(p)[0] if p.is_dir() else 0 for p in orphans)
    if remove_orphans:
        for path in orphans:
            _remove(path)
    return finished, orphans, size

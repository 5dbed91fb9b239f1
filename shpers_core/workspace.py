"""Where a workspace keeps its database, dataset, adapters and checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from shpers_core.errors import UserError
from shpers_core.names import UnsafePathError, from_stored, inside, to_stored


class WorkspaceError(UserError):
    """The workspace folder cannot be used (a file, or not creatable)."""


def default_workspace() -> Path:
    """``$SHPERS_WORKSPACE`` or the per-user data directory."""
    env = os.environ.get("SHPERS_WORKSPACE")
    return Path(env) if env else Path(platformdirs.user_data_dir("shpers", appauthor=False))


def cache_dir() -> Path:
    """Converted models and trained tokenizers: ``$SHPERS_CACHE`` or the per-user cache directory."""
    env = os.environ.get("SHPERS_CACHE")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("shpers", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | Path | None = None) -> Workspace:
        ws = cls(Path(root) if root else default_workspace())
        if ws.root.exists() and not ws.root.is_dir():
            raise WorkspaceError(f"workspace {ws.root} is a file, not a folder; choose a folder with --workspace "
                                 "or $SHPERS_WORKSPACE")
        try:
            ws.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace {ws.root}: {exc.strerror or exc}") from None
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "shpers.sqlite"

    @property
    def dataset_path(self) -> Path:
        return self.root / "dataset" / "dialogues.jsonl"

    def stored(self, path: str | Path) -> str:
        """``path`` as written into ``plan.json``: relative to the workspace when inside it."""
        return to_stored(self.root, path)

    def resolve(self, stored: str | Path) -> Path:
        """The file a path from ``plan.json`` or the store names in this workspace."""
        return from_stored(self.root, stored)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        """``runs/RUN_ID``; a run id that would name anything else (``..``, a separator) is refused."""
        if run_id in ("", ".", "..") or any(c in run_id for c in "/\\\0") or Path(run_id).is_absolute():
            raise UnsafePathError(f"run id {run_id!r} cannot name a run folder")
        path = self.runs_dir / run_id
        inside(self.runs_dir, path)
        return path

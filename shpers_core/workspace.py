"""Where a workspace keeps its database, dataset, adapters and checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


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
        ws.root.mkdir(parents=True, exist_ok=True)
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "shpers.sqlite"

    @property
    def dataset_path(self) -> Path:
        return self.root / "dataset" / "dialogues.jsonl"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

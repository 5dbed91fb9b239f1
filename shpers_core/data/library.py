"""The workspace's current dataset and every dataset a run has used, kept by content hash.

``dataset/dialogues.jsonl`` is the current dataset; ``dataset/archive/HASH.jsonl`` keeps each dataset
that was current before an import or that a run was trained on, so a run can always be chatted with,
exported or resumed on the data it used (runs record the hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shpers_core.atomic import atomic_copy
from shpers_core.data.errors import DatasetError
from shpers_core.data.loader import load_dataset
from shpers_core.data.schema import Dataset
from shpers_core.data.writer import write_jsonl
from shpers_core.workspace import Workspace


def archive_dir(ws: Workspace) -> Path:
    return ws.dataset_path.parent / "archive"


def archive_path(ws: Workspace, content_hash: str) -> Path:
    return archive_dir(ws) / f"{content_hash}.jsonl"


def remember(ws: Workspace, dataset: Dataset) -> Path:
    """Keep ``dataset`` under its hash (once); returns where it is kept."""
    path = archive_path(ws, dataset.content_hash())
    if not path.exists():
        write_jsonl(dataset, path)
    return path


@dataclass(frozen=True)
class Installed:
    path: Path
    content_hash: str
    previous: Path | None  # where the dataset it replaced is kept


def install_dataset(ws: Workspace, dataset: Dataset) -> Installed:
    """Make ``dataset`` the workspace's current dataset, keeping the one it replaces in the archive."""
    previous = None
    current = ws.dataset_path
    if current.exists():
        try:
            previous = remember(ws, load_dataset(current))
        except DatasetError:
            # A current file that no longer validates is still the user's: keep its bytes aside.
            previous = archive_dir(ws) / f"unreadable-{int(current.stat().st_mtime)}.jsonl"
            atomic_copy(current, previous)
    remember(ws, dataset)
    write_jsonl(dataset, current)
    return Installed(current, dataset.content_hash(), previous)


def history(ws: Workspace) -> list[Path]:
    """Kept datasets, newest first."""
    folder = archive_dir(ws)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)

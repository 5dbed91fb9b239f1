"""Converted and generated models under ``cache_dir()/models``, written so no reader sees half a folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shpers_core.workspace import cache_dir


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; rename it to ``final`` when the block succeeds.

    A folder at ``final`` is therefore always complete. When another process finished the same
    folder first, its copy is kept and ours discarded: both were built from the same inputs.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(final: Path) -> None:
    """Move a stale ``final`` out of the way (then delete it) so a fresh build can take its place."""
    if not final.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    try:
        os.rename(final, trash / final.name)
    except FileNotFoundError:
        pass  # another process moved it first
    shutil.rmtree(trash, ignore_errors=True)

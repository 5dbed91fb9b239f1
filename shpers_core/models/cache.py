"""Converted and generated models under ``cache_dir()/models``, written so no reader sees half a folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from shpers_core.workspace import cache_dir


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


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

"""The store's one error type and the translation of SQLite faults into messages a user can act on."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from shpers_core.errors import UserError


class StoreError(UserError):
    """The run database cannot be opened, read or written, or a run named by a user does not exist."""


def translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """A one-line :class:`StoreError` naming ``path`` and what the user can do about ``exc``."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError(f"cannot write to {path}: read-only")
    if name == "SQLITE_FULL" or "disk is full" in text:
        return StoreError(f"cannot write to {path}: disk full")
    if name.startswith("SQLITE_BUSY") or "database is locked" in text:
        return StoreError(f"cannot write to {path}: locked by another process for too long")
    if name == "SQLITE_NOTADB" or "not a database" in text:
        return StoreError(f"{path} is not a SQLite database")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StoreError(f"cannot open {path}: {_why_cannot_open(path)}")
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return StoreError(f"{path} is damaged ({text}); restore it from a backup")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
        return StoreError(f"cannot read or write {path}: disk I/O error{_likely_cause(path)}")
    return StoreError(f"database error in {path}: {text}")


def _why_cannot_open(path: Path) -> str:
    folder = path.parent
    if not folder.is_dir():
        return f"folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"folder {folder} is read-only"
    if path.exists() and not os.access(path, os.R_OK):
        return "no permission to read it"
    return "SQLite could not open the file"


def _likely_cause(path: Path) -> str:
    """SQLite reports a file-size limit or a full disk on a WAL write as a bare I/O error; name which it was."""
    # lazy: Unix only
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return (f" (this process may not write files over {limit} bytes: the file size limit, `ulimit -f`, "
                "was probably hit; raise it, then resume the run)")
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    if free < 64 * 1024 * 1024:
        return f" (the disk is full: {free // 1024} KB free; free some space, then resume the run)"
    return ""

"""The folder an export goes to: checked before any work, written whole or not at all."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shpers_core.errors import UserError


class ExportError(UserError):
    """An export that cannot be written where the user asked, or a run that cannot be exported."""


def check_target(out: Path) -> Path:
    """``out`` as a new or empty folder whose parent exists; a one-line :class:`ExportError` otherwise."""
    out = Path(out).expanduser()
    if out.is_file():
        raise ExportError(f"{out}: is a file; give a folder to export into")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out}: folder is not empty; give a new or empty folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ExportError(f"{out}: parent folder {parent} does not exist")
    return out


def describe_os_error(out: Path, exc: OSError) -> str:
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EACCES: "permission denied", errno.EROFS: "the disk is read-only"}.get(exc.errno)
    return f"{out}: cannot write the export: {why or exc.strerror or exc}; nothing was written"


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` when the block ends without error."""
    out = check_target(out)
    parent = out.absolute().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ExportError(describe_os_error(out, exc)) from None
    try:
        # mkdtemp makes the folder private (0700); an export is an ordinary folder others may read.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(describe_os_error(out, exc)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


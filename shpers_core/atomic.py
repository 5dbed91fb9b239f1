"""Files and folders written so that a reader sees the old version or the new one, never half of one.

Every write goes to a temporary name in the same folder that no other process can choose
(``mkstemp`` / ``mkdtemp``), is flushed to disk (fsync), and is renamed into place with
``os.replace``. A write that fails for want of space or permission raises :class:`WriteError`, a
user error naming the path and what to do. This module is the engine's only writer of that kind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shpers_core.errors import UserError

# What a user can do about each write failure that is not a bug.
_WRITE_FAULTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EFBIG: "the file is larger than this process may write (file size limit, `ulimit -f`)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (a read-only folder?)",
    errno.EPERM: "permission denied (a read-only folder?)",
}


class WriteError(UserError):
    """A file or folder could not be written: disk full, read-only folder, file size limit."""


def write_fault(exc: BaseException) -> str | None:
    """What to do about ``exc`` if it is a full disk or a refused write, else None.

    Writers outside Python (safetensors' Rust code) give the OS error only in their message.
    """
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        code = int(found.group(1)) if found else None
    return _WRITE_FAULTS.get(code)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_file(path: Path | str, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """An open file whose content replaces ``path`` when the block ends without error.

    The file gets the permissions an ordinary new file would (``mkstemp`` makes it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: readers see the old file or the new one."""
    with atomic_file(path) as fh:
        fh.write(text)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_file(path, "wb") as fh:
        fh.write(data)


def atomic_copy(src: Path | str, dst: Path | str) -> None:
    """Copy ``src`` to ``dst`` atomically."""
    with atomic_file(dst, "wb") as fh, open(src, "rb") as source:
        shutil.copyfileobj(source, fh)


def recover_dir(final: Path) -> None:
    """Tidy what a crash during :func:`atomic_write_dir` of ``final`` can leave behind.

    A half-written ``.tmp`` folder is deleted (a checkpoint of many adapters can be a gigabyte); a
    crash between the two renames leaves ``final`` missing and its complete old copy as ``.old``,
    which is put back.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not final.exists():
        os.replace(olds.pop(), final)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then move the folder to ``final``, replacing any old one."""
    final = Path(final)
    recover_dir(final)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        write(tmp)
        _fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except Exception as exc:
        why = write_fault(exc)
        if why is None:
            raise
        raise WriteError(f"cannot write {final}: {why}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; rename it to ``final`` when the block succeeds.

    For caches: when another process finished the same folder first, its copy is kept and ours
    discarded, both having been built from the same inputs.
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


def _fsync_dir(path: Path) -> None:
    """Flush the files directly in ``path`` and the folder entry itself."""
    for child in path.iterdir():
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A Ray worker's private scratch folder, and the clearing of those that killed workers left behind.

A worker copies the job's workspace, checkpoints and adapters into a scratch folder and removes it
when it ends. A worker that is killed (out of memory, a lost node, a test) cannot, and on a node that
lives for weeks its folders would fill the disk. Each scratch folder holds an exclusive lock on a
file inside it for as long as its worker lives: the kernel drops the lock when the process dies,
however it dies, so a later worker that can take the lock knows the folder is abandoned. A process id
could not say as much: it is reused, and differs between containers sharing a folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind; scratch folders are then not swept
    fcntl = None

log = logging.getLogger(__name__)

OWNER = ".owner"
# A folder without its lock file is younger than this only while its worker is still starting.
STARTING_S = 3600.0


def _private_parent(kind: str) -> Path | None:
    """``<tempdir>/shpers-<kind>-<uid>``, made private to this user; ``None`` where it cannot be
    trusted (another user's folder or a link in a shared ``/tmp``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    parent = Path(tempfile.gettempdir()) / f"shpers-{kind}-{uid}"
    try:
        parent.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(parent)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        log.warning("not using %s for scratch folders: it is not a private folder of this user", parent)
        return None
    return parent


def _abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder / OWNER, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime > STARTING_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its worker holds the lock: alive
    finally:
        os.close(fd)
    return True


def sweep_abandoned(parent: Path) -> int:
    """Remove the scratch folders in ``parent`` whose worker has died; returns how many."""
    removed = 0
    for folder in parent.iterdir():
        if folder.is_dir() and not folder.is_symlink() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def worker_scratch(kind: str) -> Iterator[Path]:
    """A new private folder for this worker's files, removed when the block ends; folders of the same
    ``kind`` left by dead workers on this machine are removed first."""
    parent = _private_parent(kind) if fcntl is not None else None
    if parent is not None:
        swept = sweep_abandoned(parent)
        if swept:
            log.info("removed %d scratch folder(s) that killed workers left in %s", swept, parent)
    path = Path(tempfile.mkdtemp(prefix=f"shpers-{kind}-", dir=parent))
    owner = None
    try:
        if parent is not None:
            owner = os.open(path / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(owner, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if owner is not None:
            os.close(owner)

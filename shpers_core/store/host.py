"""Facts about this process that a run records: host, pid liveness, code version, UTC time."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds; the fixed width makes text order time order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def host_name() -> str:
    return socket.gethostname()


def pid_alive(pid: int | None) -> bool | None:
    """Whether process ``pid`` on this host still runs; ``None`` when that cannot be told."""
    if pid is None or pid <= 0 or sys.platform == "win32":
        # On Windows os.kill(pid, 0) terminates the process instead of probing it.
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child that nobody has reaped yet still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


# The libraries whose versions change a run's numbers (kernels, model code, LoRA layers, the metric).
NUMERIC_LIBRARIES = ("torch", "transformers", "peft", "sentence-transformers")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``shpers <version>``, plus the git commit when running from a checkout, then the versions of
    :data:`NUMERIC_LIBRARIES` installed, e.g. ``shpers 0.1.0 (git 1a2b3c4); torch 2.13.0, transformers 5.17.0``."""
    try:
        version = metadata.version("shpers")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git_commit(Path(__file__).resolve().parents[2])
    libraries = []
    for name in NUMERIC_LIBRARIES:
        try:
            libraries.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    shpers = f"shpers {version}" + (f" (git {commit})" if commit else "")
    return "; ".join([shpers, ", ".join(libraries)]) if libraries else shpers


def _git_commit(root: Path) -> str:
    if not (root / ".git").exists():
        return ""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")

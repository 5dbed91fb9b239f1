"""Safe on-disk names for things a user named (persona ids, clusters, merges) and checks that a
path built from user data stays inside the folder it belongs to.

Ids stay as the user wrote them everywhere they are shown and stored; only folder names are
derived: a readable slug plus a hash of the whole id, so ``a/b``, ``a_b``, ``.``, ``..``, ``CON``
or a 10,000-character id each get their own short, portable name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from shpers_core.errors import UserError

SLUG_CHARS = 40
HASH_CHARS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class UnsafePathError(UserError):
    """A path built from user data would leave the folder it belongs to."""


def safe_name(text: str) -> str:
    """A portable file name for ``text``: ``slug-hash``; distinct texts give distinct names.

    The slug keeps ASCII letters, digits, ``_`` and ``-`` (so no separator, dot, control
    character or reserved device name survives alone); the hash is of the exact text, so two
    ids that slug alike (``a/b`` and ``a_b``, ``Anna`` and ``anna`` on a case-blind disk) differ.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _UNSAFE.sub("_", ascii_text).strip("_-")[:SLUG_CHARS] or "id"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    return f"{slug}-{digest}"


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, after checking it lies inside ``root`` (symlinks followed); else :class:`UnsafePathError`."""
    try:
        root_resolved = Path(root).resolve()
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise UnsafePathError(f"{path}: refused, it cannot be resolved ({exc})") from None
    if resolved != root_resolved and not resolved.is_relative_to(root_resolved):
        raise UnsafePathError(f"{path}: refused, it lies outside {root}")
    return resolved


def child(root: Path, name: str) -> Path:
    """``root / safe_name(name)``, checked to stay inside ``root``."""
    path = Path(root) / safe_name(name)
    inside(root, path)
    return path


def to_stored(root: Path, path: str | Path) -> str:
    """``path`` as kept in the store or ``plan.json``: relative to ``root`` (POSIX) when inside it, so a
    moved or copied workspace still finds its own files."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    for base, target in ((Path(root), p), (Path(root).resolve(), p.resolve())):
        if target.is_relative_to(base):
            return target.relative_to(base).as_posix()
    return str(p)


def from_stored(root: Path, text: str | Path) -> Path:
    """The path a stored ``text`` names now. Relative: under ``root``. Absolute (written before paths
    were relative): the same ``runs/...`` under ``root`` when it exists there, so a moved or copied
    workspace reads its own adapters, not the original's."""
    p = Path(text)
    if not p.is_absolute():
        return Path(root) / p
    local = relocated(root, p)
    return local if local is not None and local.exists() else p


def relocated(root: Path, path: Path) -> Path | None:
    """``root/runs/...`` for an absolute path that has a ``runs/RUN/...`` part, else None."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "runs":
            return Path(root).joinpath(*parts[i:])
    return None

"""Training checkpoints written atomically and read without unpickling.

A checkpoint folder holds the trainable weights (safetensors), the optimiser state and RNG
(``torch.load(weights_only=True)``), and the loop's counters (JSON). It is written next to its
final place and renamed into it, so a crash leaves either the old checkpoint or the new one.
A write that fails for want of space or permission raises :class:`WriteError`, a user error
naming the folder and what to do.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shpers_core.errors import UserError

WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"

# What a user can do about each write failure that is not a bug.
_WRITE_FAULTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EFBIG: "the file is larger than this process may write (file size limit, `ulimit -f`)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (a read-only folder?)",
    errno.EPERM: "permission denied (a read-only folder?)",
}


class CheckpointError(UserError):
    """A checkpoint folder that cannot be read back (truncated, corrupt, or holding a refused pickle)."""


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


@dataclass
class Checkpoint:
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor
    state: dict[str, Any]
    best: dict[str, torch.Tensor] | None
    device_rng: torch.Tensor | None = None
    """The CUDA generator's state when training ran on a GPU (its dropout draws from it)."""

    def restore_rng(self, device: torch.device) -> None:
        """Put the random generators back as they were when the checkpoint was saved."""
        torch.set_rng_state(self.rng)
        if self.device_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(self.device_rng, device)


def recover_dir(final: Path) -> None:
    """Tidy what a crash during :func:`atomic_write_dir` of ``final`` can leave behind.

    A half-written ``.tmp-`` folder is deleted (a checkpoint of many adapters can be a gigabyte); a
    crash between the two renames leaves ``final`` missing and its complete old copy as ``.old-``,
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def atomic_write_dir(final: Path, write) -> None:
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


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: Path,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    best: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> None:
    """Save a checkpoint with the random generators as they are now (dropout draws from them; on a
    GPU from the CUDA generator of ``device``)."""
    rng = torch.get_rng_state()
    device_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
        if best is not None:
            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / BEST))
        # Serialised in memory and written by Python, so that a full disk is an OSError with its
        # errno: torch.save writing to a file reports it only as "unexpected pos".
        buffer = io.BytesIO()
        torch.save({"optimizer": optimizer_state, "rng": rng, "device_rng": device_rng}, buffer)
        (tmp / OPTIMIZER).write_bytes(buffer.getvalue())
        (tmp / STATE).write_text(json.dumps(state))

    atomic_write_dir(Path(directory), write)


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None if there is none yet."""
    directory = Path(directory)
    recover_dir(directory)
    if not (directory / STATE).exists():
        return None
    try:
        state = json.loads((directory / STATE).read_text())
        if not isinstance(state, dict):
            raise ValueError(f"{STATE} is not a JSON object")
        extra = torch.load(directory / OPTIMIZER, weights_only=True)
        if not isinstance(extra, dict) or not isinstance(extra.get("rng"), torch.Tensor):
            raise ValueError(f"{OPTIMIZER} does not hold an optimiser state and random generator")
        best = load_file(str(directory / BEST)) if (directory / BEST).exists() else None
        return Checkpoint(weights=load_file(str(directory / WEIGHTS)), optimizer=extra["optimizer"], rng=extra["rng"],
                          state=state, best=best, device_rng=extra.get("device_rng"))
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the files, the checkpoint cannot be used
        if write_fault(exc) is not None and not isinstance(exc, PermissionError):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if isinstance(exc, pickle.UnpicklingError):
            # Never pass on torch's hint to retry with weights_only=False: that would run the file's code.
            reason = f"{OPTIMIZER} holds objects other than tensors and was refused"
        raise CheckpointError(
            f"checkpoint unreadable: {directory} ({type(exc).__name__}: {reason}); restart the run from its "
            f"beginning with `shpers runs resume RUN_ID --restart`, or delete that folder") from None

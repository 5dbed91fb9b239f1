"""Training checkpoints written atomically and read without unpickling.

A checkpoint folder holds the trainable weights (safetensors), the optimiser state and RNG
(``torch.load(weights_only=True)``), and the loop's counters (JSON). It is written next to its
final place and renamed into it, so a crash leaves either the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"


@dataclass
class Checkpoint:
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor
    state: dict[str, Any]
    best: dict[str, torch.Tensor] | None


def atomic_write_dir(final: Path, write) -> None:
    """Call ``write(tmp_dir)`` then move the folder to ``final``, replacing any old one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write(tmp)
        _fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
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
    rng: torch.Tensor,
    state: dict[str, Any],
    best: dict[str, torch.Tensor] | None,
) -> None:
    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
        if best is not None:
            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / BEST))
        torch.save({"optimizer": optimizer_state, "rng": rng}, tmp / OPTIMIZER)
        (tmp / STATE).write_text(json.dumps(state))

    atomic_write_dir(Path(directory), write)


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None if there is none yet."""
    directory = Path(directory)
    if not (directory / STATE).exists():
        return None
    extra = torch.load(directory / OPTIMIZER, weights_only=True)
    best = load_file(str(directory / BEST)) if (directory / BEST).exists() else None
    return Checkpoint(
        weights=load_file(str(directory / WEIGHTS)),
        optimizer=extra["optimizer"],
        rng=extra["rng"],
        state=json.loads((directory / STATE).read_text()),
        best=best,
    )

"""Training checkpoints written atomically and read without unpickling.

A checkpoint folder holds the trainable weights (safetensors), the optimiser state and RNG
(``torch.load(weights_only=True)``), and the loop's counters (JSON). It is written next to its
final place and renamed into it, so a crash leaves either the old checkpoint or the new one.
A write that fails for want of space or permission raises :class:`~shpers_core.atomic.WriteError`,
a user error naming the folder and what to do.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shpers_core.atomic import atomic_write_dir, recover_dir, write_fault
from shpers_core.errors import UserError

WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"

class CheckpointError(UserError):
    """A checkpoint folder that cannot be read back (truncated, corrupt, or holding a refused pickle)."""


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


def steps_saved(folder: Path) -> int:
    """Training steps the checkpoints in ``folder``'s subfolders hold, over all their adapters: where a run
    stopped part-way resumes. ``fit`` saves one adapter's ``step``, the batched trainer a ``steps`` list;
    a state file that cannot be read counts as none."""
    total = 0
    for state_file in sorted(Path(folder).glob(f"*/{STATE}")):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        steps = state.get("steps", state.get("step", 0)) if isinstance(state, dict) else 0
        steps = steps if isinstance(steps, list) else [steps]
        total += sum(s for s in steps if isinstance(s, int) and not isinstance(s, bool) and s > 0)
    return total


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

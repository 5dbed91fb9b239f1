"""What a batched training run trains, as a fingerprint its checkpoints carry; a run resumes only
from a checkpoint whose fingerprint matches."""

from __future__ import annotations

import hashlib
import json
from array import array
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shpers_core.events import Reporter
from shpers_core.training.batching import Example
from shpers_core.training.checkpoint import STATE, Checkpoint, load_checkpoint
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.multi.lora import _matches


def _examples_digest(groups: list[list[Example]]) -> str:
    h = hashlib.sha256()
    for examples in groups:
        h.update(b"|adapter|")
        for e in examples:
            h.update(array("q", e.input_ids).tobytes())
            h.update(b"/")
            h.update(array("q", e.labels).tobytes())
            h.update(b";")
    return h.hexdigest()


def _tensors_digest(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(str(key).encode())
        if isinstance(value, dict):
            h.update(_tensors_digest(value).encode())
        elif isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def training_fingerprint(base_model: nn.Module, ids: list[str], train_ex: dict[str, list[Example]],
                         val_ex: dict[str, list[Example]], lora: LoraParams, train: TrainParams,
                         init_state: dict | None) -> dict[str, Any]:
    """What a checkpoint of :func:`train_many` must match to be resumed (as it reads back from JSON)."""
    targets = list(lora.target_modules)
    layers = [[n, m.in_features, m.out_features] for n, m in base_model.named_modules()
              if isinstance(m, nn.Linear) and _matches(n, targets)]
    fingerprint = {
        "adapters": ids,
        "train examples": [len(train_ex[pid]) for pid in ids],
        "validation examples": [len(val_ex.get(pid) or []) for pid in ids],
        "tokens": _examples_digest([train_ex[pid] for pid in ids] + [val_ex.get(pid) or [] for pid in ids]),
        "lora": lora.to_dict(),
        # How often to checkpoint does not change what is trained.
        "training parameters": {k: v for k, v in train.to_dict().items() if k != "checkpoint_every"},
        "layers": layers,
        "start weights": "peft" if init_state is None else _tensors_digest(init_state),
    }
    return json.loads(json.dumps(fingerprint))


def checkpointed_adapters(directory: Path) -> list[str] | None:
    """The adapter ids of the :func:`train_many` checkpoint in ``directory``, if there is one."""
    try:
        state = json.loads((Path(directory) / STATE).read_text())
        return list(state["fingerprint"]["adapters"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def matching_checkpoint(directory: Path, fingerprint: dict[str, Any], reporter: Reporter) -> Checkpoint | None:
    """The checkpoint in ``directory`` if it was made by this same training, else None (and a log line)."""
    found = load_checkpoint(directory)
    if found is None:
        return None
    saved = found.state.get("fingerprint")
    if saved != fingerprint:
        saved = saved if isinstance(saved, dict) else {}
        differ = [key for key in fingerprint if saved.get(key) != fingerprint[key]] or ["format"]
        reporter.log(f"ignoring the checkpoint in {directory}: it was made for other training "
                     f"({', '.join(differ)} differ); starting from the beginning", "warning")
        return None
    return found


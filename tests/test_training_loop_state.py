"""The trainers' loop state survives a checkpoint, and checkpoints written before it existed still load."""

from __future__ import annotations

import json
import math

import torch

from shpers_core.training.checkpoint import STATE, load_checkpoint, save_checkpoint
from shpers_core.training.loop_state import LoopState, Spent


def save_state(folder, state: dict) -> dict:
    save_checkpoint(folder, {"w": torch.zeros(2)}, {}, state, None, torch.device("cpu"))
    return load_checkpoint(folder).state


def test_a_loop_state_round_trips_through_a_checkpoint(tmp_path):
    state = LoopState(step=4, train_curve=[(1, 2.5), (2, 2.25), (3, 2.0), (4, 1.75)], val_curve=[(2, 2.4), (4, 2.5)],
                      best_val=2.4, bad_epochs=1, stopped_early=True)
    spent = Spent(tokens=120, padded=8, seconds=1.5)
    saved = save_state(tmp_path / "one", state.to_dict() | spent.to_dict())
    assert LoopState.from_dict(saved) == state
    assert Spent.from_dict(saved) == spent

    fresh = LoopState()  # best_val is infinite until the first validation
    assert math.isinf(LoopState.from_dict(save_state(tmp_path / "fresh", fresh.to_dict())).best_val)

    states = [state, fresh]
    assert LoopState.from_columns(save_state(tmp_path / "many", LoopState.to_columns(states))) == states


def test_a_single_adapter_checkpoint_of_todays_format_resumes(tmp_path):
    # state.json exactly as fit wrote it before the loop state was typed.
    (tmp_path / "ck").mkdir()
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(2)}, {}, {}, None, torch.device("cpu"))
    written = {"step": 3, "best_val": 2.1, "bad_epochs": 0, "train_curve": [[1, 2.9], [2, 2.6], [3, 2.4]],
               "val_curve": [[3, 2.1]], "seconds": 0.75, "stopped_early": False, "tokens": 96, "padded": 4}
    (tmp_path / "ck" / STATE).write_text(json.dumps(written))
    saved = load_checkpoint(tmp_path / "ck").state
    assert LoopState.from_dict(saved) == LoopState(step=3, train_curve=[(1, 2.9), (2, 2.6), (3, 2.4)],
                                                   val_curve=[(3, 2.1)], best_val=2.1)
    assert Spent.from_dict(saved) == Spent(tokens=96, padded=4, seconds=0.75)
    # and written back under the same keys
    assert set(LoopState.from_dict(saved).to_dict() | Spent.from_dict(saved).to_dict()) == set(written)


def test_a_batched_checkpoint_of_todays_format_resumes(tmp_path):
    # state.json as the batched trainer writes it: one list per field, an entry per adapter.
    written = {"fingerprint": None, "global_step": 2, "steps": [2, 1], "stopped": [False, True],
               "best_val": [1.5, float("inf")], "bad_epochs": [0, 2], "train_curves": [[[1, 2.0], [2, 1.8]], [[1, 3.0]]],
               "val_curves": [[[2, 1.5]], []], "epoch_vals": {}, "mean_train": [[1, 2.5, 0.001], [2, 1.8, 0.001]],
               "mean_val": [], "tokens": 50, "padded": 0, "seconds": 0.5}
    states = LoopState.from_columns(save_state(tmp_path, written))
    assert states == [LoopState(step=2, train_curve=[(1, 2.0), (2, 1.8)], val_curve=[(2, 1.5)], best_val=1.5),
                      LoopState(step=1, train_curve=[(1, 3.0)], bad_epochs=2, stopped_early=True)]
    assert LoopState.to_columns(states) == {k: written[k] if "curves" not in k else
                                            [[tuple(p) for p in c] for c in written[k]] for k in
                                            ("steps", "stopped", "best_val", "bad_epochs", "train_curves", "val_curves")}

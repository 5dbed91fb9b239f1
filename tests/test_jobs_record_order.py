"""A run reads as finished or cancelled only once its curves and log lines are in the store.

The app and scripts wait for the status; what they read next must be the whole record.
"""

from __future__ import annotations

import pytest

from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

TINY = {"train.num_epochs": 2, "eval.max_new_tokens": 4, "eval.max_test_dialogues": 1}


@pytest.fixture()
def workspace(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(n_personas=2, dialogues_per_persona=6), ws.dataset_path)
    return ws


def _record_at_status_change(monkeypatch, method_name: str) -> dict:
    """Patch RunStore.``method_name`` to note the run's stored log lines and curve points when it is called."""
    seen: dict = {}
    original = getattr(RunStore, method_name)

    def noting(store, run_id, *args, **kwargs):
        seen["logs"] = [line.message for line in store.logs(run_id)]
        seen["steps"] = sum(len(c.points) for c in store.curves(run_id, kind="train").values())
        return original(store, run_id, *args, **kwargs)

    monkeypatch.setattr(RunStore, method_name, noting)
    return seen


@pytest.mark.parametrize("stop_after", [None, 2], ids=["finished", "cancelled"])
def test_the_log_and_curves_are_stored_before_the_status_says_the_run_ended(workspace, monkeypatch, stop_after):
    seen = _record_at_status_change(monkeypatch, "finish_run" if stop_after is None else "cancel_run")
    steps = []
    reporter = CollectingReporter(should_stop=lambda: stop_after is not None and len(steps) >= stop_after)
    reporter.add_sink(lambda e: steps.append(e) if e.kind == "step" else None)
    spec = build_spec("unified_lora", TINY, base_model="tiny-qwen2")
    if stop_after is None:
        run_job(spec, workspace, reporter)
    else:
        with pytest.raises(JobCancelled):
            run_job(spec, workspace, reporter)
    logged = [e.message for e in reporter.events if e.kind == "log"]
    assert logged and seen["logs"] == logged
    assert seen["steps"] == len(steps) > 0

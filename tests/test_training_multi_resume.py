"""Checkpoints of the batched multi-adapter trainer: a cancelled or crashed run resumes to the
adapters of the run that nothing interrupted (dropout on), a checkpoint of other training is
ignored, and a per-persona job cancelled mid-training resumes through the job runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic import examples, tiny_model

from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore
from shpers_core.training.checkpoint import load_checkpoint
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.multi import train_many
from shpers_core.workspace import Workspace

LORA = LoraParams(lora_dropout=0.1)  # dropout on: a resume must restore the RNG it draws from
TRAIN = TrainParams(num_epochs=2, batch_size=2, learning_rate=5e-3)
# Different sizes: 6, 2 and 4 steps, so adapters drop out of the global steps at different times.
DATA = {"a": examples(5, 1, "a"), "b": examples(2, 2, "b"), "c": examples(4, 3, "c")}
VAL = {pid: examples(2, 10 + i, pid) for i, pid in enumerate(DATA)}
EARLY_STOP = TrainParams(num_epochs=8, batch_size=2, learning_rate=0.5, early_stopping_patience=1)


def stop_after(checks: int) -> CollectingReporter:
    """A reporter whose should_stop turns true after ``checks`` checks (one per global step)."""
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > checks

    return CollectingReporter(should_stop=should_stop)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def flat(points):
    """Curve points as one flat list, for pytest.approx."""
    return [float(x) for point in points for x in (point if isinstance(point, tuple) else (point,))]


def steps_of(rep, series):
    return [e.step for e in rep.of_kind("step") if e.series == series]


def messages(rep):
    return [e.message for e in rep.of_kind("log")]


@pytest.mark.parametrize("params, cancel_at", [(TRAIN, 4), (EARLY_STOP, 4)], ids=["plain", "early-stop"])
def test_cancelled_run_resumes_to_the_uninterrupted_adapters(tmp_path, params, cancel_at):
    ref_rep = CollectingReporter()
    ref = train_many(tiny_model(), 0, DATA, LORA, params, ref_rep, val_by_adapter=VAL)
    if params.early_stopping_patience:
        assert ref.stopped_early, "nothing stopped early: the best-weights state was not tested"
    assert cancel_at < ref.global_steps

    ckpt = tmp_path / "ckpt"
    with pytest.raises(JobCancelled):
        train_many(tiny_model(), 0, DATA, LORA, params, stop_after(cancel_at), val_by_adapter=VAL,
                   checkpoint_dir=ckpt, checkpoint_every=100)
    saved = load_checkpoint(ckpt)
    assert saved.state["global_step"] == cancel_at
    if params.early_stopping_patience:
        assert any(saved.state["stopped"]) and saved.best, "no early-stop state crossed the resume"

    rep = CollectingReporter()
    result = train_many(tiny_model(), 0, DATA, LORA, params, rep, val_by_adapter=VAL, checkpoint_dir=ckpt,
                        checkpoint_every=100)
    planned = max(params.total_steps(len(ex)) for ex in DATA.values())
    assert f"resumed train at step {cancel_at} of {planned}" in messages(rep)
    for pid in DATA:
        assert_same(result.state_dicts[pid], ref.state_dicts[pid])
        assert flat(result.train_losses[pid]) == pytest.approx(flat(ref.train_losses[pid]), rel=1e-5)
        assert flat(result.val_losses[pid]) == pytest.approx(flat(ref.val_losses[pid]), rel=1e-5)
    assert (result.steps, result.global_steps, result.stopped_early) == (ref.steps, ref.global_steps,
                                                                         ref.stopped_early)
    # Replayed points and new ones together: every step once, in order, as the uninterrupted run sent them.
    assert steps_of(rep, "train") == list(range(1, ref.global_steps + 1))
    for pid in DATA:
        assert steps_of(rep, f"{pid}/train") == list(range(1, ref.steps[pid] + 1))
    for series in ("train", *(f"{pid}/train" for pid in DATA)):
        got = [(e.step, e.loss, e.learning_rate) for e in rep.of_kind("step") if e.series == series]
        want = [(e.step, e.loss, e.learning_rate) for e in ref_rep.of_kind("step") if e.series == series]
        assert flat(got) == pytest.approx(flat(want), rel=1e-5), series
    for series in ("val", *(f"{pid}/val" for pid in DATA)):
        got = sorted((e.step, e.loss) for e in rep.of_kind("validation") if e.series == series)
        want = sorted((e.step, e.loss) for e in ref_rep.of_kind("validation") if e.series == series)
        assert want and flat(got) == pytest.approx(flat(want), rel=1e-5), series

    # The finished run left its last state: another call trains nothing and gives the same adapters.
    again_rep = CollectingReporter()
    again = train_many(tiny_model(), 0, DATA, LORA, params, again_rep, val_by_adapter=VAL, checkpoint_dir=ckpt)
    assert steps_of(again_rep, "train") == list(range(1, ref.global_steps + 1))  # the replay only
    for pid in DATA:
        assert_same(again.state_dicts[pid], ref.state_dicts[pid])


def test_crashed_run_resumes_from_its_last_periodic_checkpoint(tmp_path):
    ref = train_many(tiny_model(), 0, DATA, LORA, TRAIN, CollectingReporter())

    def crash_at_step_5(event):
        if event.kind == "step" and event.series == "train" and event.step == 5:
            raise RuntimeError("killed")

    rep = CollectingReporter()
    rep.add_sink(crash_at_step_5)
    with pytest.raises(RuntimeError, match="killed"):
        train_many(tiny_model(), 0, DATA, LORA, TRAIN.replace(checkpoint_every=2), rep, checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path).state["global_step"] == 4

    # How often to checkpoint is not part of what is trained: a new cadence still resumes.
    rep = CollectingReporter()
    result = train_many(tiny_model(), 0, DATA, LORA, TRAIN.replace(checkpoint_every=3), rep, checkpoint_dir=tmp_path)
    assert "resumed train at step 4 of 6" in messages(rep)
    assert steps_of(rep, "train") == [1, 2, 3, 4, 5, 6]
    for pid in DATA:
        assert_same(result.state_dicts[pid], ref.state_dicts[pid])


def test_checkpoint_of_other_training_is_ignored(tmp_path):
    with pytest.raises(JobCancelled):
        train_many(tiny_model(), 0, DATA, LORA, TRAIN, stop_after(3), checkpoint_dir=tmp_path)
    two = {pid: DATA[pid] for pid in ("a", "b")}
    fresh = train_many(tiny_model(), 0, two, LORA, TRAIN, CollectingReporter())

    rep = CollectingReporter()
    result = train_many(tiny_model(), 0, two, LORA, TRAIN, rep, checkpoint_dir=tmp_path)
    ignored = [m for m in messages(rep) if m.startswith("ignoring the checkpoint")]
    assert len(ignored) == 1 and "adapters" in ignored[0], messages(rep)
    assert not any(m.startswith("resumed") for m in messages(rep))
    assert steps_of(rep, "train") == list(range(1, fresh.global_steps + 1))
    for pid in two:
        assert_same(result.state_dicts[pid], fresh.state_dicts[pid])
    assert load_checkpoint(tmp_path).state["fingerprint"]["adapters"] == ["a", "b"]  # replaced

    rep = CollectingReporter()
    train_many(tiny_model(), 0, two, LORA, TRAIN.replace(learning_rate=1e-3), rep, checkpoint_dir=tmp_path)
    assert any(m.startswith("ignoring the checkpoint") and "training parameters" in m for m in messages(rep))


# --- through the job runner --------------------------------------------------------------------------

JOB = {"num_epochs": 2, "batch_size": 2, "max_length": 128, "max_test_dialogues": 1, "max_new_tokens": 4,
       "lora_dropout": 0.1}


def per_persona():
    return build_spec("per_persona_lora", JOB, base_model="tiny-qwen2", device="cpu")


def new_workspace(root: Path) -> Workspace:
    ws = Workspace.open(root)
    write_jsonl(generate_dataset(3, 6), ws.dataset_path)
    return ws


def adapters_of(ws: Workspace, run_id: str) -> dict[str, dict[str, torch.Tensor]]:
    folder = ws.run_dir(run_id) / "adapters"
    return {d.name: load_file(str(d / "adapter_model.safetensors")) for d in sorted(folder.iterdir())}


def cancel_after(step: int) -> CollectingReporter:
    """A reporter that asks the job to stop once it has seen global step ``step``."""
    seen: list[int] = []
    reporter = CollectingReporter(should_stop=lambda: bool(seen) and seen[-1] >= step)
    reporter.add_sink(lambda e: seen.append(e.step) if e.kind == "step" and e.series == "train" else None)
    return reporter


def test_per_persona_job_cancelled_then_resumed_equals_the_uninterrupted_job(tmp_path, shpers_cache):
    ref_ws = new_workspace(tmp_path / "reference")
    ref_id = run_job(per_persona(), ref_ws, CollectingReporter())
    reference = adapters_of(ref_ws, ref_id)
    assert len(reference) == 3
    with RunStore(ref_ws.db_path) as store:
        total = len(store.curves(ref_id)["train"].points)
    assert total >= 4

    ws = new_workspace(tmp_path / "ws")
    reporter = cancel_after(2)
    with pytest.raises(JobCancelled):
        run_job(per_persona(), ws, reporter)
    run_id = reporter.of_kind("cancelled")[0].run_id
    assert steps_of(reporter, "train") == [1, 2]
    with RunStore(ws.db_path) as store:
        assert store.get_run(run_id).status == "cancelled"
    checkpoints = ws.run_dir(run_id) / "checkpoints" / "batched"
    assert load_checkpoint(checkpoints).state["global_step"] == 2
    assert not (ws.run_dir(run_id) / "adapters").exists()

    torch.manual_seed(1234)  # as in a new process: the resume must not rely on the RNG left by the cancel
    assert run_job(per_persona(), ws, CollectingReporter(), run_id=run_id) == run_id
    with RunStore(ws.db_path) as store:
        assert store.get_run(run_id).status == "finished"
        assert f"resumed train at step 2 of {total}" in [line.message for line in store.logs(run_id)]
        assert [s for s, _ in store.curves(run_id)["train"].points] == list(range(1, total + 1))
    adapters = adapters_of(ws, run_id)
    assert adapters.keys() == reference.keys()
    for pid in reference:
        assert_same(adapters[pid], reference[pid])

    # Stopped while saving the adapters (one not yet written): the resume finishes the checkpointed
    # batch of all three, which trains nothing more, and writes the missing adapter as it was.
    missing = sorted(reference)[1]
    shutil.rmtree(ws.run_dir(run_id) / "adapters" / missing)
    reporter = CollectingReporter()
    run_job(per_persona(), ws, reporter, run_id=run_id)
    assert f"resumed train at step {total} of {total}" in messages(reporter)
    assert steps_of(reporter, "train") == list(range(1, total + 1))  # the replay only
    assert_same(adapters_of(ws, run_id)[missing], reference[missing])

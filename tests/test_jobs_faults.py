"""Real faults while jobs run: a SIGKILL, a cancel, an allocation the OS refuses, a write past a
file size limit, a read-only workspace, and several writers at once. Each fault is the real thing
(a signal, an rlimit, a permission), not a mock. Jobs train a LoRA on tiny-qwen2 for seconds.

Store-level faults (a writer killed mid-transaction, SQLITE_FULL) are in test_store_faults.py.
"""

from __future__ import annotations

import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter, Event, JobCancelled
from shpers_core.jobs.process import JobProcess
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.names import safe_name
from shpers_core.store import RunStore
from shpers_core.training.checkpoint import load_checkpoint
from shpers_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
# 3 personas x 6 dialogues: 12 training dialogues, in batches of 2 six steps an epoch, and a
# checkpoint at the end of each epoch. Dropout stays on, so a resume must restore the RNG too.
STEPS_PER_EPOCH = 6
EPOCHS = 16
TOTAL = STEPS_PER_EPOCH * EPOCHS
TRAIN = {"num_epochs": EPOCHS, "batch_size": 2, "max_length": 128, "max_test_dialogues": 1, "max_new_tokens": 4}
CLI_TINY = ["--device", "cpu", "-q", "--param", "batch_size=2", "--param", "max_length=128",
            "--param", "max_test_dialogues=1", "--param", "max_new_tokens=4"]


def _permissions_bite() -> bool:
    """Whether this process is refused a write into a read-only folder (root with its usual
    capabilities is not, and then the read-only tests cannot fault anything)."""
    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            (locked / "probe").touch()
        except PermissionError:
            return True
        finally:
            locked.chmod(0o755)
        return False


NEEDS_PERMISSIONS = pytest.mark.skipif(not _permissions_bite(), reason="this user ignores file permissions (root)")


def unified(**overrides):
    return build_spec("unified_lora", {**TRAIN, **overrides}, base_model="tiny-qwen2", device="cpu")


def new_workspace(root: Path) -> Workspace:
    ws = Workspace.open(root)
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    return ws


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    # shpers_cache puts SHPERS_CACHE and HF_HUB_OFFLINE in os.environ, which job processes inherit.
    return new_workspace(tmp_path / "ws")


@dataclass
class Reference:
    adapter: dict[str, torch.Tensor]
    curve: list[tuple[int, float]]


@pytest.fixture(scope="module")
def reference(models_cache, tmp_path_factory) -> Reference:
    """The adapter and loss curve of the run that nothing interrupted."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        ws = new_workspace(tmp_path_factory.mktemp("reference"))
        run_id = run_job(unified(), ws, CollectingReporter())
    with RunStore(ws.db_path) as store:
        curve = store.curves(run_id)["train"].points
    return Reference(adapter_of(ws, run_id), curve)


def adapter_of(ws: Workspace, run_id: str) -> dict[str, torch.Tensor]:
    return load_file(str(ws.run_dir(run_id) / "adapters" / "unified" / "adapter_model.safetensors"))


def assert_same_run_as(reference: Reference, ws: Workspace, run_id: str) -> None:
    adapter = adapter_of(ws, run_id)
    assert adapter.keys() == reference.adapter.keys()
    for key, tensor in reference.adapter.items():
        torch.testing.assert_close(adapter[key], tensor, rtol=1e-5, atol=1e-7, msg=key)
    with RunStore(ws.db_path) as store:
        curve = store.curves(run_id)["train"].points
    assert [s for s, _ in curve] == list(range(1, TOTAL + 1)), "every step once, none lost or doubled"
    assert [v for _, v in curve] == pytest.approx([v for _, v in reference.curve], rel=1e-5)


def shpers(ws: Workspace, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(rc: int, err: str) -> str:
    """The one line a failed command printed; exit code 2."""
    lines = [line for line in err.strip().splitlines() if line.startswith("shpers: error: ")]
    assert rc == 2 and len(lines) == 1, err
    return lines[0].removeprefix("shpers: error: ")


def integrity(ws: Workspace) -> str:
    with RunStore(ws.db_path) as store:
        return store.db.execute("PRAGMA integrity_check").fetchone()[0]


def events_until(job: JobProcess, events: list[Event], done, timeout: float = 240.0) -> None:
    """Poll ``job`` into ``events`` until ``done(events)``."""
    deadline = time.monotonic() + timeout
    while not done(events):
        assert time.monotonic() < deadline, f"job gave up or hung; events: {[e.kind for e in events][-10:]}"
        events.extend(job.poll(timeout=0.2))


def test_killed_job_shows_interrupted_and_resumes_to_the_uninterrupted_adapter(workspace, reference, capsys):
    job = JobProcess(unified(), str(workspace.root))
    events: list[Event] = []
    job.start()
    try:
        # Kill it mid-epoch, after its first checkpoint.
        events_until(job, events, lambda ev: any(e.kind == "step" and e.step > STEPS_PER_EPOCH + 2 for e in ev)
                     or any(e.kind in ("failed", "process_ended") for e in ev))
        job.kill()
    finally:
        job.kill()
        job.join(30)
    assert not any(e.kind == "failed" for e in events), events
    run_id = next(e.run_id for e in events if e.kind == "started")
    folder = workspace.run_dir(run_id)
    assert not (folder / "adapters" / "unified").exists(), "the job ended before the kill: nothing was tested"
    saved = load_checkpoint(folder / "checkpoints" / "unified").state["step"]
    assert saved % STEPS_PER_EPOCH == 0 and STEPS_PER_EPOCH <= saved < TOTAL

    with RunStore(workspace.db_path) as store:
        run = store.get_run(run_id)
        assert run.status == "interrupted" and f"process {job.pid} " in run.error
    assert integrity(workspace) == "ok"

    rc, out, err = shpers(workspace, capsys, "runs", "resume", run_id)
    assert rc == 0, err
    with RunStore(workspace.db_path) as store:
        assert store.get_run(run_id).status == "finished"
        assert f"resumed train at step {saved} of {TOTAL}" in [line.message for line in store.logs(run_id)]
    assert_same_run_as(reference, workspace, run_id)


def test_cancel_stops_within_a_step_then_the_run_resumes_or_is_deleted(workspace, reference, capsys):
    def cancel_after(step: int) -> CollectingReporter:
        """A reporter that asks the job to stop once it has seen ``step``."""
        steps: list[int] = []
        reporter = CollectingReporter(should_stop=lambda: bool(steps) and steps[-1] >= step)
        reporter.add_sink(lambda e: steps.append(e.step) if e.kind == "step" else None)
        return reporter

    reporter = cancel_after(4)
    with pytest.raises(JobCancelled):
        run_job(unified(), workspace, reporter)
    assert [e.step for e in reporter.of_kind("step")] == [1, 2, 3, 4]
    run_id = reporter.of_kind("cancelled")[0].run_id
    with RunStore(workspace.db_path) as store:
        assert store.get_run(run_id).status == "cancelled"
    assert load_checkpoint(workspace.run_dir(run_id) / "checkpoints" / "unified").state["step"] == 4

    rc, _, err = shpers(workspace, capsys, "runs", "resume", run_id)
    assert rc == 0, err
    assert_same_run_as(reference, workspace, run_id)

    reporter = cancel_after(2)
    with pytest.raises(JobCancelled):
        run_job(unified(), workspace, reporter)
    doomed = reporter.of_kind("cancelled")[0].run_id
    assert workspace.run_dir(doomed).exists()
    rc, out, err = shpers(workspace, capsys, "runs", "delete", doomed, "--yes")
    assert rc == 0 and f"deleted {doomed}" in out, err
    assert not workspace.run_dir(doomed).exists()
    with RunStore(workspace.db_path) as store:
        assert [r.id for r in store.list_runs()] == [run_id]
        for table in ("curves", "events_log", "artefacts"):
            assert store.db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [doomed]).fetchone()[0] == 0


def _address_space() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmSize:")[1].split()[0]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_out_of_memory_fails_the_run_and_says_what_to_lower(workspace, capsys):
    """The address space is capped below what the 0.5B-shaped model needs: a real refused allocation."""
    from shpers_core.cli.main import build_parser
    from shpers_core.models.tiny import shape_tokenizer

    build_parser()  # import every command module, and start the tokenizer's threads, before the cap
    shape_tokenizer()("warm up")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + 400 * 2**20  # below the 545 MB of the model's embedding table alone
    if hard != resource.RLIM_INFINITY and hard < cap:
        pytest.skip("the hard address-space limit is already lower")
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        rc, _, err = shpers(workspace, capsys, "run", "unified_lora", "--model", "qwen2.5-0.5b-shape", *CLI_TINY)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    line = error_line(rc, err)
    for words in ("out of memory", "lower train.batch_size", "eval.eval_batch_size", "smaller base model"):
        assert words in line
    # The model is loaded before the run is recorded (its target modules are checked against it), so
    # a model too large for memory leaves no failed run behind, only the line.
    assert not workspace.db_path.exists() or integrity(workspace) == "ok"
    if workspace.db_path.exists():
        with RunStore(workspace.db_path) as store:
            assert store.list_runs() == []


def test_a_write_that_fails_mid_job_fails_the_run_cleanly_and_it_resumes(workspace, capsys):
    """A file size limit below one checkpoint: writes fail part-way, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = 2**20  # rank 1024 makes the checkpoint's weights ~1.8 MB; the database stays far below
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip("the hard file size limit is already lower")
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        rc, _, err = shpers(workspace, capsys, "run", "unified_lora", "--model", "tiny-qwen2", *CLI_TINY,
                            "--param", "rank=1024", "--param", "num_epochs=2")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    line = error_line(rc, err)
    with RunStore(workspace.db_path) as store:
        [run] = store.list_runs()
        assert (run.status, run.error) == ("failed", line)
    checkpoints = workspace.run_dir(run.id) / "checkpoints"
    assert line.startswith(f"cannot write {checkpoints / 'unified'}: ") and "file size limit" in line
    assert list(checkpoints.iterdir()) == [], "no checkpoint, whole or partial, and no temporary folder"
    assert not (workspace.run_dir(run.id) / "adapters").exists()
    assert integrity(workspace) == "ok"

    rc, _, err = shpers(workspace, capsys, "runs", "resume", run.id)
    assert rc == 0, err
    with RunStore(workspace.db_path) as store:
        assert store.get_run(run.id).status == "finished"
    assert adapter_of(workspace, run.id)


@NEEDS_PERMISSIONS
def test_read_only_workspace_is_one_line_and_leaves_the_database_whole(workspace, capsys):
    with RunStore(workspace.db_path):
        pass
    before = workspace.db_path.read_bytes()
    workspace.root.chmod(0o555)
    workspace.db_path.chmod(0o444)
    try:
        rc, _, err = shpers(workspace, capsys, "run", "unified_lora", "--model", "tiny-qwen2", *CLI_TINY)
    finally:
        workspace.db_path.chmod(0o644)
        workspace.root.chmod(0o755)
    line = error_line(rc, err)
    assert str(workspace.db_path) in line and "read-only" in line
    assert workspace.db_path.read_bytes() == before
    assert integrity(workspace) == "ok"

    # Only the runs folder read-only: the run is recorded, fails at its first checkpoint, resumes.
    runs = workspace.root / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    try:
        rc, _, err = shpers(workspace, capsys, "run", "unified_lora", "--model", "tiny-qwen2", *CLI_TINY,
                            "--param", "num_epochs=1")
    finally:
        runs.chmod(0o755)
    line = error_line(rc, err)
    assert line.startswith(f"cannot write {runs}/") and "permission denied" in line
    with RunStore(workspace.db_path) as store:
        [run] = store.list_runs()
        assert (run.status, run.error) == ("failed", line)
    rc, _, err = shpers(workspace, capsys, "runs", "resume", run.id)
    assert rc == 0, err
    assert adapter_of(workspace, run.id)


HALF_WRITE = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from shpers_core.atomic import atomic_write_dir

    lock = threading.Lock()

    def half(tmp):
        (tmp / "adapter_config.json").write_text("{}")
        with open(tmp / "adapter_model.safetensors", "wb") as f:
            f.write(b"\\0" * 4096)
            f.flush()
        with lock:
            print("half", flush=True)
        time.sleep(600)

    for folder in sys.argv[1:]:
        threading.Thread(target=atomic_write_dir, args=(Path(folder), half), daemon=True).start()
    time.sleep(600)
""")


def test_a_crash_mid_write_never_leaves_a_half_adapter_that_looks_complete(tmp_path):
    from shpers_core.methods.context import MethodContext
    from shpers_core.training.adapters import AdapterError, load_lora_adapter, save_lora_adapter

    adapters = tmp_path / "runs" / "r1" / "adapters"
    old = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(8, 64),
           "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(64, 8)}
    save_lora_adapter(adapters / safe_name("replaced"), old, rank=8, lora_alpha=16, target_modules=["q_proj"], base_model="m")
    replaced, new = safe_name("replaced"), safe_name("new")
    proc = subprocess.Popen([sys.executable, "-c", HALF_WRITE, str(adapters / replaced), str(adapters / new)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["half", "half"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    # What resuming a run looks at (MethodContext.saved_adapter): the half-written one is not there...
    ctx = MethodContext.__new__(MethodContext)
    ctx.workspace, ctx.run_id, ctx.folder_names = Workspace(tmp_path), "r1", {}
    assert list(adapters.glob(f".{new}.tmp-*")), "the killed writer should have left its temporary folder"
    assert ctx.saved_adapter("new") is None
    assert not list(adapters.glob(f".{new}.tmp-*")), "looking for the adapter tidies the crashed write away"
    with pytest.raises(AdapterError, match="not an adapter folder"):
        load_lora_adapter(adapters / new)
    # ...and the one it was replacing is whole.
    kept = ctx.saved_adapter("replaced")
    assert not list(adapters.glob(".*"))
    assert kept.state_dict.keys() == old.keys()
    assert all(torch.equal(kept.state_dict[k], v) for k, v in old.items())
    # Writing again after the crash works.
    save_lora_adapter(adapters / new, old, rank=8, lora_alpha=16, target_modules=["q_proj"], base_model="m")
    assert ctx.saved_adapter("new") is not None


def test_a_crash_between_the_renames_puts_the_old_adapter_back(tmp_path):
    from shpers_core.methods.context import MethodContext
    from shpers_core.training.adapters import save_lora_adapter

    adapters = tmp_path / "runs" / "r1" / "adapters"
    weights = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(8, 64),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(64, 8)}
    p1 = safe_name("p1")
    save_lora_adapter(adapters / p1, weights, rank=8, lora_alpha=16, target_modules=["q_proj"], base_model="m")
    # What atomic_write_dir leaves when killed after moving the old folder aside, before moving the new in.
    (adapters / p1).rename(adapters / f".{p1}.old-0000abcd")
    ctx = MethodContext.__new__(MethodContext)
    ctx.workspace, ctx.run_id, ctx.folder_names = Workspace(tmp_path), "r1", {}
    kept = ctx.saved_adapter("p1")
    assert kept is not None and torch.equal(kept.state_dict[next(iter(weights))], next(iter(weights.values())))
    assert not list(adapters.glob(f".{p1}.*"))


def curves_from(events: list[Event]) -> dict[str, list[tuple[int, float]]]:
    """The curves a job's events describe, keyed as RunStore.curves keys them."""
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for e in events:
        if e.kind in ("step", "validation"):
            points.setdefault((e.series, "train" if e.kind == "step" else "val"), []).append((e.step, e.loss))
    names = [series for series, _ in points]
    return {(f"{series}/{kind}" if names.count(series) > 1 else series): sorted(p)
            for (series, kind), p in points.items()}


def test_two_job_processes_and_a_cli_run_at_once_keep_their_own_curves_and_runs(workspace, capsys):
    # Long enough (16 epochs, several seconds) that one job is still training when the other, started
    # with it, has loaded its model: at 4 epochs the unified job once ended 0.1 s before the other began.
    jobs = {
        "unified": JobProcess(unified(seed=1), str(workspace.root)),
        "per_persona": JobProcess(build_spec("per_persona_lora", TRAIN, base_model="tiny-qwen2", device="cpu"),
                                  str(workspace.root)),
    }
    events: dict[str, list[Event]] = {name: [] for name in jobs}
    for job in jobs.values():
        job.start()
    try:
        for name, job in jobs.items():
            events_until(job, events[name], lambda ev: any(e.kind in ("started", "process_ended") for e in ev))
        # A third writer, in this process, while both jobs write curves.
        rc, out, err = shpers(workspace, capsys, "run", "unified_lora", "--model", "tiny-qwen2", *CLI_TINY,
                              "--param", "seed=2", "--param", "num_epochs=4")
        assert rc == 0, err
        cli_run = out.strip().splitlines()[-1]
        for name, job in jobs.items():
            events_until(job, events[name], lambda ev: any(e.kind == "process_ended" for e in ev))
    finally:
        for job in jobs.values():
            job.kill()
            job.join(30)

    runs = {}
    with RunStore(workspace.db_path) as store:
        for name in jobs:
            kinds = [e.kind for e in events[name]]
            assert "finished" in kinds and "failed" not in kinds, (name, events[name][-3:])
            assert events[name][-1].exitcode == 0
            run_id = next(e.run_id for e in events[name] if e.kind == "started")
            stored = {series: curve.points for series, curve in store.curves(run_id).items()}
            assert stored == curves_from(events[name]), name
            runs[name] = store.get_run(run_id)
        assert [s for s, _ in store.curves(cli_run)["train"].points] == list(range(1, 4 * STEPS_PER_EPOCH + 1))
        runs["cli"] = store.get_run(cli_run)
        assert sorted(r.id for r in store.list_runs(status="finished")) == sorted(r.id for r in runs.values())
        assert len(store.list_runs()) == 3
        assert all(store.metrics(r.id, subset="all").get("embedding_similarity") is not None for r in runs.values())
    # They did run at the same time.
    a, b, c = runs["unified"], runs["per_persona"], runs["cli"]
    assert a.started_at < b.finished_at and b.started_at < a.finished_at
    assert c.started_at < max(a.finished_at, b.finished_at)
    assert integrity(workspace) == "ok"


def test_job_process_reports_a_mistake_found_before_the_run_exists(workspace):
    """The app learns of a mistake found before a run is recorded from the job's events alone
    (the job process's own function, called here: a process of its own would add nothing)."""
    from shpers_core.jobs.process import _child

    events: queue.Queue = queue.Queue()
    spec = build_spec("unified_lora", TRAIN, base_model="tiny-qwen2", personas=["persona_999"])
    _child(spec.to_dict(), str(workspace.root), events, threading.Event(), None)
    sent = [events.get_nowait() for _ in range(events.qsize())]
    assert [e.kind for e in sent] == ["failed"]
    assert "persona 'persona_999' is not in the dataset" in sent[0].error
    if workspace.db_path.exists():
        with RunStore(workspace.db_path) as store:
            assert store.list_runs() == []

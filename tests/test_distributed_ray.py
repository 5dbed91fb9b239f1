"""Jobs on a local Ray cluster (2 CPUs, started once for this module): the same runs as local jobs,
one-line errors before anything is recorded, and the fault cases of a lost worker or driver."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch
from cli_workspace import make_workspace, shpers

ray = pytest.importorskip("ray")

from shpers_core.store import RunStore  # noqa: E402
from shpers_core.training.adapters import load_lora_adapter  # noqa: E402

pytestmark = pytest.mark.timeout(900)

FAST = ["--param", "train.num_epochs=1", "--param", "eval.max_test_dialogues=1", "--param", "eval.max_new_tokens=4",
        "--param", "eval.max_train_dialogues=4", "--param", "train.warmup_ratio=0"]


@pytest.fixture(scope="module")
def cluster(models_cache):
    """One local Ray instance for the module; workers inherit the test cache (set before they start)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TQDM_DISABLE", "1")
        # "local": a new instance even where `ray start` left one running on this machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def runs(root: Path) -> list:
    with RunStore(root / "shpers.sqlite") as store:
        return store.list_runs()


def adapter(root: Path, run_id: str, persona: str | None = None) -> dict[str, torch.Tensor]:
    with RunStore(root / "shpers.sqlite") as store:
        arts = [a for a in store.artefacts(run_id, kind="adapter") if a.persona_id == persona]
    assert len(arts) == 1
    return load_lora_adapter(arts[0].path).state_dict


def assert_same_adapters(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=tol), key


def test_unreachable_cluster_is_one_line_and_records_nothing(tmp_path, shpers_cache):
    root = make_workspace(tmp_path)
    rc, _, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--executor", "ray",
                        "--ray-address", "127.0.0.1:9", *FAST)
    assert rc == 2
    assert err.count("\n") == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in err
    assert runs(root) == []


def test_missing_gpu_is_one_line_and_records_nothing(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path)
    rc, _, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--executor", "ray",
                        "--gpus", "1", *FAST)
    assert rc == 2
    assert err.count("\n") == 1 and "asks for 1 GPUs" in err
    assert runs(root) == []


def test_a_ray_run_stores_what_a_local_run_stores(tmp_path, shpers_cache, cluster):
    local, remote = make_workspace(tmp_path / "local"), make_workspace(tmp_path / "ray")
    rc, out, _ = shpers(local, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--dtype", "float32", *FAST)
    assert rc == 0
    rc, out, err = shpers(remote, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--dtype", "float32",
                          "--executor", "ray", *FAST)
    assert rc == 0, err
    (lrun,), (rrun,) = runs(local), runs(remote)
    assert rrun.status == "finished" and out.strip() == rrun.id
    assert_same_adapters(adapter(local, lrun.id), adapter(remote, rrun.id))
    with RunStore(local / "shpers.sqlite") as ls, RunStore(remote / "shpers.sqlite") as rs:
        assert rs.metrics(rrun.id, subset="all") == pytest.approx(ls.metrics(lrun.id, subset="all"))
        assert [p.prediction for p in rs.predictions(rrun.id)] == [p.prediction for p in ls.predictions(lrun.id)]
        # Curves came back as events while the job ran, and the driver's store has them.
        assert rs.curves(rrun.id, kind="train").keys() == ls.curves(lrun.id, kind="train").keys()
        assert any("running on Ray node" in line.message for line in rs.logs(rrun.id))
        assert rs.get_run(rrun.id).pid == os.getpid()
        # What the Jobs tab shows, kept in the store: the worker's node and device.
        from shpers_core.distributed.placement import stored_placement

        assert stored_placement(rs, rrun.id) == f"Ray node {ray.util.get_node_ip_address()} (CPU)"
        assert stored_placement(ls, lrun.id) == "this machine"
    assert (remote / "runs" / rrun.id / "plan.json").exists()


class WorkerKiller:
    """Kills a job's first Ray worker (SIGKILL, as a crashed node would) once the driver holds a checkpoint."""

    def __init__(self, root: Path):
        from shpers_core.events import CollectingReporter

        self.root = root
        self.reporter = CollectingReporter()
        self.killed: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            placed = [e for e in self.reporter.of_kind("placed") if e.attempt == 1]
            held = list(self.root.glob("runs/*/checkpoints/unified/*"))
            if placed and held and self.killed is None:
                self.killed = placed[0].pid
                os.kill(self.killed, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def ray_unified(root: Path, reporter, retries: int) -> str:
    from shpers_core.distributed.options import RayOptions
    from shpers_core.distributed.ray_executor import run_on_ray
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    # Enough work after the first checkpoint that the kill lands mid-job: the tiny model trains a step
    # in well under 0.1 s and the driver sees a checkpoint only after the watcher's next scan (1 s).
    spec = build_spec("unified_lora", {"train.num_epochs": 40, "train.checkpoint_every": 1, "train.warmup_ratio": 0,
                                       "eval.max_train_dialogues": 4, "eval.max_test_dialogues": 3,
                                       "eval.max_new_tokens": 64}, base_model="tiny-qwen2")
    return run_on_ray(spec, Workspace.open(root), reporter, options=RayOptions(max_retries=retries))


def test_a_lost_worker_is_retried_from_the_drivers_checkpoint(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path)
    killer = WorkerKiller(root)
    try:
        run_id = ray_unified(root, killer.reporter, retries=2)
    finally:
        killer.stop()
    assert killer.killed is not None
    attempts = [e.attempt for e in killer.reporter.of_kind("placed")]
    assert attempts == [1, 2]
    # The second attempt went on from what the driver held: the checkpoint (the trainer says where it
    # resumed, then replays the curve so far) or, when the kill came after training, the saved adapter.
    second = killer.reporter.events[killer.reporter.events.index(killer.reporter.of_kind("placed")[1]):]
    resumed = [e.message for e in second if e.kind == "log" and e.message.startswith("resumed ")]
    trained = [e for e in second if e.kind == "step"]
    assert resumed or not trained
    if resumed:
        assert int(resumed[0].split(" at step ")[1].split()[0]) >= 1
    (run,) = runs(root)
    assert run.id == run_id and run.status == "finished"
    with RunStore(root / "shpers.sqlite") as store:
        assert any("worker lost on attempt 1 of 3" in line.message for line in store.logs(run_id))
        assert set(store.persona_scores(run_id)) == set(run.personas)


@pytest.mark.slow
def test_a_worker_lost_past_its_retries_leaves_an_interrupted_run_that_resumes(tmp_path, shpers_cache, cluster):
    from shpers_core.distributed.ray_executor import JobInterrupted

    root = make_workspace(tmp_path)
    killer = WorkerKiller(root)
    try:
        with pytest.raises(JobInterrupted, match="runs resume"):
            ray_unified(root, killer.reporter, retries=0)
    finally:
        killer.stop()
    (run,) = runs(root)
    assert run.status == "interrupted"
    rc, out, err = shpers(root, "runs", "resume", run.id)
    assert rc == 0, err
    (run,) = runs(root)
    assert run.status == "finished"


def running_runs(db: Path) -> list[str]:
    """Runs marked running, read without opening a RunStore (which would also recover or migrate)."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return [row[0] for row in con.execute("SELECT id FROM runs WHERE status = 'running'")]
    except sqlite3.Error:
        return []  # still being created


def test_a_killed_driver_leaves_its_run_interrupted(tmp_path, cluster):
    root = make_workspace(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-m", "shpers_core.cli.main", "--workspace", str(root), "run",
                               "unified_lora", "--model", "tiny-qwen2", "-q", "--executor", "ray", "--ray-address",
                               cluster, *FAST], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if running_runs(root / "shpers.sqlite"):
                break
            time.sleep(0.1)
        assert driver.poll() is None, driver.stderr.read().decode()
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    (run,) = runs(root)  # this open finds the driver gone
    assert run.status == "interrupted"
    assert "ended without finishing" in run.error


# Dropout draws come from one generator shared by the adapters of a batch, so they depend on the slice;
# bfloat16 rounding depends on how the work is split over threads.
SAME = ["--param", "lora.lora_dropout=0", "--dtype", "float32"]


def test_gpu_workers_pick_their_own_precision_unless_the_job_names_one():
    from shpers_core.distributed.models import worker_dtype

    # A CPU driver's float32 would halve a GPU worker's speed: GPU workers choose (bf16 / fp16) themselves.
    assert worker_dtype(None, "float32", on_gpu=True) is None
    assert worker_dtype(None, "float32", on_gpu=False) == "float32"
    assert worker_dtype("float32", "float32", on_gpu=True) == "float32"  # --dtype float32 holds everywhere


@pytest.mark.slow
def test_per_persona_lora_in_two_shards_equals_the_one_process_run(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path, personas=4)
    rc, _, err = shpers(root, "run", "per_persona_lora", "--model", "tiny-qwen2", "-q", "--name", "one", *FAST, *SAME)
    assert rc == 0, err
    rc, _, err = shpers(root, "run", "per_persona_lora", "--model", "tiny-qwen2", "-q", "--name", "sharded",
                        "--executor", "ray", "--param", "shards=2", *FAST, *SAME)
    assert rc == 0, err
    by_name = {r.name: r for r in runs(root)}
    one, sharded = by_name["one"], by_name["sharded"]
    assert sharded.status == "finished" and len(one.personas) == 4
    for pid in one.personas:
        assert_same_adapters(adapter(root, one.id, pid), adapter(root, sharded.id, pid), tol=1e-5)
    with RunStore(root / "shpers.sqlite") as store:
        assert any("in 2 shards on Ray" in line.message for line in store.logs(sharded.id))
        # CPU workers hold the base as the job does: that is what keeps them equal to the one-process run.
        assert any(line.message.startswith("base model on the training worker in float32 on cpu (as the job holds")
                   for line in store.logs(sharded.id))
        for metric in ("embedding_similarity", "val_loss"):
            subset = "validation" if metric == "val_loss" else "all"
            assert store.persona_scores(sharded.id, metric, subset) == pytest.approx(
                store.persona_scores(one.id, metric, subset), abs=1e-5)
        assert store.metrics(sharded.id, subset="all") == pytest.approx(store.metrics(one.id, subset="all"), abs=1e-5)


def study_table(root: Path, *extra: str) -> list:
    from shpers_core.evaluation.table import study_rows

    rc, out, err = shpers(root, "study", "--preset", "smoke", "--model", "tiny-qwen2", "--dtype", "float32", "-q",
                          *extra)
    assert rc == 0, err
    with RunStore(root / "shpers.sqlite") as store:
        return study_rows(store)


SCORES = ("mean", "std", "persona_dependent", "other", "device_precision", "parameter_f1", "numerical_precision",
          "diff_vs_unified")


@pytest.mark.slow
def test_a_study_on_ray_gives_the_local_table(tmp_path, shpers_cache, cluster):
    from shpers_core.jobs.study import STUDY_STEPS

    local = study_table(make_workspace(tmp_path / "local", personas=4))
    remote_root = make_workspace(tmp_path / "ray", personas=4)
    remote = study_table(remote_root, "--executor", "ray")
    # One run per row: the merges and prefixes found the per-persona and unified runs the driver holds.
    assert len(remote) == len(local) == len(STUDY_STEPS)
    for lrow, rrow in zip(sorted(local, key=lambda r: r.run_name), sorted(remote, key=lambda r: r.run_name)):
        assert (rrow.run_name, rrow.method, rrow.status, rrow.n_personas, rrow.verdict, rrow.trainable_params) == (
            lrow.run_name, lrow.method, lrow.status, lrow.n_personas, lrow.verdict, lrow.trainable_params)
        for name in SCORES:
            assert getattr(rrow, name) == pytest.approx(getattr(lrow, name), abs=1e-6), (rrow.run_name, name)
    # Its merges and prefixes named the study's own rows, which a wave before them made.
    with RunStore(remote_root / "shpers.sqlite") as store:
        runs = store.list_runs()
        own = {m: next(r.id for r in runs if r.method == m) for m in ("per_persona_lora", "unified_lora")}
        built = [r for r in runs if r.parent_run_id]
        assert len(built) == 11 and all(r.params["source_run"] == r.parent_run_id for r in built)
        assert {r.parent_run_id for r in built} == set(own.values())
    # --resume on Ray keeps the finished rows and continues a stopped one in its own run.
    with RunStore(remote_root / "shpers.sqlite") as store:
        stopped = next(r for r in store.list_runs() if r.method == "retrieval")
        store.set_status(stopped.id, "interrupted")
    again = study_table(remote_root, "--executor", "ray", "--resume")
    assert sorted(r.run_id for r in again) == sorted(r.run_id for r in remote)
    with RunStore(remote_root / "shpers.sqlite") as store:
        assert store.get_run(stopped.id).status == "finished" and len(store.list_runs()) == len(STUDY_STEPS)


def test_bench_prints_the_ray_paths_overhead(shpers_cache, cluster, tmp_path):
    rc, out, err = shpers(tmp_path, "bench", "--executor", "ray", "--model", "tiny-qwen2", "--personas", "2")
    assert rc == 0, err
    assert "job on Ray" in out and "overhead" in out
    local, remote = (float(line.split()[-2]) for line in out.splitlines() if line.strip().startswith(("local job", "job on Ray")))
    assert local > 0 and remote > 0


@pytest.mark.slow
def test_cancel_on_the_driver_stops_the_worker_and_the_run_resumes(tmp_path, shpers_cache, cluster):
    from shpers_core.events import CollectingReporter, JobCancelled

    root = make_workspace(tmp_path)
    reporter = CollectingReporter()
    reporter.add_sink(lambda event: reporter.request_stop() if event.kind == "step" else None)
    with pytest.raises(JobCancelled):
        ray_unified(root, reporter, retries=0)
    (run,) = runs(root)
    assert run.status == "cancelled"
    assert reporter.of_kind("cancelled")  # the worker's runner said so, through the channel
    rc, out, err = shpers(root, "runs", "resume", run.id)
    assert rc == 0, err
    assert runs(root)[0].status == "finished"


def test_the_apps_job_process_sends_its_job_to_ray_and_relays_a_refusal(tmp_path, shpers_cache):
    """The app runs each job in a child process; with a Ray runner that child is the driver."""
    from shpers_core.distributed.ray_executor import RayRunner
    from shpers_core.jobs.process import JobProcess
    from shpers_core.jobs.spec import build_spec

    root = make_workspace(tmp_path)
    process = JobProcess(build_spec("unified_lora", base_model="tiny-qwen2"), str(root),
                         runner=RayRunner("127.0.0.1:9"))
    process.start()
    events = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(e.kind == "process_ended" for e in events):
        events += process.poll(timeout=0.5)
    failed = [e for e in events if e.kind == "failed"]
    assert failed and "cannot reach the Ray cluster at 127.0.0.1:9" in failed[0].error
    assert runs(root) == []


@pytest.mark.slow
def test_a_sweep_on_ray_gives_the_local_sweeps_runs(tmp_path, shpers_cache, cluster):
    sweep = ["sweep", "unified_lora", "train.learning_rate", "1e-4", "1e-3", "--model", "tiny-qwen2", "-q",
             *FAST, *SAME]
    local, remote = make_workspace(tmp_path / "local"), make_workspace(tmp_path / "ray")
    rc, lout, err = shpers(local, *sweep)
    assert rc == 0, err
    rc, rout, err = shpers(remote, *sweep, "--executor", "ray")
    assert rc == 0, err
    with RunStore(local / "shpers.sqlite") as ls, RunStore(remote / "shpers.sqlite") as rs:
        lruns, rruns = [ls.get_run(r) for r in lout.split()], [rs.get_run(r) for r in rout.split()]
        assert [r.name for r in rruns] == [r.name for r in lruns] == [
            "unified_lora learning_rate=0.0001", "unified_lora learning_rate=0.001"]
        for lrun, rrun in zip(lruns, rruns):
            assert rrun.status == "finished"
            assert any("running on Ray node" in line.message for line in rs.logs(rrun.id))
            assert rs.metrics(rrun.id, subset="all") == pytest.approx(ls.metrics(lrun.id, subset="all"), abs=1e-6)
            assert_same_adapters(adapter(local, lrun.id), adapter(remote, rrun.id))


@pytest.mark.slow
def test_runs_cancel_stops_a_ray_job_with_a_checkpoint_and_it_resumes_on_ray(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    # Enough training after the first checkpoint that the cancel lands mid-training.
    slow = ["--param", "train.num_epochs=30", "--param", "train.checkpoint_every=1", "--param", "train.warmup_ratio=0",
            "--param", "eval.max_train_dialogues=4", "--param", "eval.max_test_dialogues=3",
            "--param", "eval.max_new_tokens=64"]
    driver = subprocess.Popen([sys.executable, "-m", "shpers_core.cli.main", "--workspace", str(root), "run",
                               "unified_lora", "--model", "tiny-qwen2", "-q", "--executor", "ray", "--ray-address",
                               cluster, *slow], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if running_runs(root / "shpers.sqlite") and list(root.glob("runs/*/checkpoints/unified/*")):
                break
            time.sleep(0.1)
        assert driver.poll() is None, driver.stderr.read().decode()
        (run_id,) = running_runs(root / "shpers.sqlite")
        rc, out, err = shpers(root, "runs", "cancel", run_id, "--wait", "120")
        assert rc == 0, err
        assert out.strip() == f"cancelled {run_id}"
        assert driver.wait(timeout=60) == 130
    finally:
        if driver.poll() is None:
            driver.kill()
    (run,) = runs(root)
    assert run.status == "cancelled"
    assert list(root.glob(f"runs/{run_id}/checkpoints/unified/*"))  # the driver holds the worker's checkpoint
    trained_before = (root / "runs" / run_id / "adapters" / "unified").exists()
    rc, out, err = shpers(root, "runs", "resume", run_id, "--executor", "ray", "--ray-address", cluster)
    assert rc == 0, err
    (run,) = runs(root)
    assert run.status == "finished"
    with RunStore(root / "shpers.sqlite") as store:
        lines = [line.message for line in store.logs(run_id)]
    assert sum("running on Ray node" in m for m in lines) == 2
    # The second worker went on from the checkpoint (or, if the cancel came after training, the adapter).
    assert any(m.startswith("resumed train at step ") for m in lines) or trained_before, lines


@pytest.mark.slow
def test_unified_lora_data_parallel_on_two_workers_equals_the_one_process_run(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path)
    # batch_size 3: the global batch does not split evenly over two workers, and the last one is short.
    common = ["--model", "tiny-qwen2", "-q", *FAST, *SAME, "--param", "train.batch_size=3"]
    rc, _, err = shpers(root, "run", "unified_lora", "--name", "one", *common)
    assert rc == 0, err
    rc, _, err = shpers(root, "run", "unified_lora", "--name", "two workers", "--param", "workers=2", *common)
    assert rc == 0, err
    by_name = {r.name: r for r in runs(root)}
    one, ddp = by_name["one"], by_name["two workers"]
    assert ddp.status == "finished"
    assert_same_adapters(adapter(root, one.id), adapter(root, ddp.id), tol=1e-5)
    with RunStore(root / "shpers.sqlite") as store:
        assert any("data-parallel on 2 Ray Train workers" in line.message for line in store.logs(ddp.id))
        assert sum(line.message.startswith("base model on the training worker in float32 on cpu")
                   for line in store.logs(ddp.id)) == 1  # worker 0 says it, once
        # Worker 0's curve came back as it trained: the global batch's loss, step for step.
        (lcurve,), (dcurve,) = store.curves(one.id, kind="train").values(), store.curves(ddp.id, kind="train").values()
        assert dcurve.steps == lcurve.steps
        assert dcurve.values == pytest.approx(lcurve.values, abs=1e-5)
    assert list(root.glob(f"runs/{ddp.id}/checkpoints/unified/*"))  # the job holds worker 0's checkpoint


@pytest.fixture(scope="module")
def cancelled_data_parallel(tmp_path_factory, models_cache, cluster) -> Path:
    """A workspace with a one-process unified run ("one") and the same on 2 Ray Train workers ("dp")
    cancelled at step 2; built once for the module (two Ray Train group start-ups), copied by each test."""
    from shpers_core.events import CollectingReporter, JobCancelled
    from shpers_core.jobs.runner import run_job
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    root = make_workspace(tmp_path_factory.mktemp("cancelled-dp"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        # Enough steps that the stop asked at step 2 reaches the workers while they still train: the tiny
        # model takes a few milliseconds a step, and the request travels driver -> channel -> workers.
        params = {"train.num_epochs": 30, "train.checkpoint_every": 1, "train.warmup_ratio": 0,
                  "train.batch_size": 3, "lora.lora_dropout": 0, "eval.max_train_dialogues": 4,
                  "eval.max_test_dialogues": 1, "eval.max_new_tokens": 4}
        run_job(build_spec("unified_lora", params, base_model="tiny-qwen2", dtype="float32", name="one"),
                Workspace.open(root), CollectingReporter())
        reporter = CollectingReporter()
        reporter.add_sink(lambda e: reporter.request_stop() if e.kind == "step" and e.step >= 2 else None)
        spec = build_spec("unified_lora", {**params, "workers": 2}, base_model="tiny-qwen2", dtype="float32",
                          name="dp")
        with pytest.raises(JobCancelled):
            run_job(spec, Workspace.open(root), reporter)
    return root


def one_process_and_cancelled_data_parallel(built: Path, root: Path):
    """A copy at ``root`` of the :func:`cancelled_data_parallel` workspace ``built``: the one-process run's
    id, the cancelled run's spec and its record."""
    from shpers_core.jobs.spec import JobSpec

    shutil.copytree(built, root, dirs_exist_ok=True)
    by_name = {r.name: r for r in runs(root)}
    dp = by_name["dp"]
    return by_name["one"].id, JobSpec.from_dict(dp.params), dp


@pytest.mark.slow
def test_a_data_parallel_run_cancelled_mid_training_resumes_to_the_one_process_adapter(tmp_path, shpers_cache,
                                                                                        cluster, cancelled_data_parallel):
    root = tmp_path
    one, _, dp = one_process_and_cancelled_data_parallel(cancelled_data_parallel, root)
    assert dp.status == "cancelled"
    assert list(root.glob(f"runs/{dp.id}/checkpoints/unified/*"))  # worker 0's, written on the way out
    rc, _, err = shpers(root, "runs", "resume", dp.id)
    assert rc == 0, err
    assert {r.name: r for r in runs(root)}["dp"].status == "finished"
    with RunStore(root / "shpers.sqlite") as store:
        assert any(line.message.startswith("resumed train at step ") for line in store.logs(dp.id))
    assert_same_adapters(adapter(root, one), adapter(root, dp.id), tol=1e-5)


QUICK = {"train.num_epochs": 1, "train.warmup_ratio": 0, "eval.max_train_dialogues": 2, "eval.max_test_dialogues": 1,
         "eval.max_new_tokens": 4}


def log_lines(root: Path, run_id: str) -> list[str]:
    with RunStore(root / "shpers.sqlite") as store:
        return [line.message for line in store.logs(run_id)]


def test_a_worker_with_an_empty_cache_gets_the_model_shipped_once_per_node(tmp_path, shpers_cache, cluster):
    from shpers_core.distributed.options import RayOptions
    from shpers_core.distributed.ray_executor import run_on_ray
    from shpers_core.events import CollectingReporter
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    root = make_workspace(tmp_path / "ws")
    empty = tmp_path / "worker-cache"
    empty.mkdir()
    # The worker's own cache folder holds nothing: it cannot build or find tiny-qwen2 by itself.
    options = RayOptions(worker_env={"SHPERS_CACHE": str(empty)})
    ids = [run_on_ray(build_spec("unified_lora", QUICK, base_model="tiny-qwen2", name=name), Workspace.open(root),
                      CollectingReporter(), options=options) for name in ("first", "second")]
    assert [r.status for r in runs(root)] == ["finished", "finished"]
    first, second = (log_lines(root, rid) for rid in ids)
    assert any(m.startswith("model tiny-qwen2 shipped to this node (") for m in first), first
    assert not any("shipped" in m for m in second), second
    assert any(m.startswith("model tiny-qwen2 in the node's cache") for m in second), second
    (folder,) = (empty / "models" / "by-hash").iterdir()
    assert (folder / "config.json").is_file()
    assert not list((empty / "models").glob("tiny-qwen2-*"))  # shipped, not rebuilt there


def test_a_shared_folder_carries_checkpoints_and_adapters_instead_of_the_object_store(tmp_path, shpers_cache,
                                                                                        cluster):
    root = make_workspace(tmp_path / "ws")
    shared = tmp_path / "shared"
    shared.mkdir()
    rc, out, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--executor", "ray",
                          "--shared-folder", str(shared), "--param", "train.checkpoint_every=1", *FAST)
    assert rc == 0, err
    (run,) = runs(root)
    assert run.status == "finished" and out.strip() == run.id
    assert adapter(root, run.id)  # the finished adapter, written into the workspace from the shared folder
    assert list(root.glob(f"runs/{run.id}/checkpoints/unified/*"))
    assert f"checkpoints and adapters go through the shared folder {shared / f'shpers-run-{run.id}'}" in \
        log_lines(root, run.id)
    assert list(shared.iterdir()) == []  # the driver took every batch and removed the run's folder
    rc, _, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "--shared-folder", str(shared))
    assert rc == 2 and "--shared-folder needs --executor ray" in err
    rc, _, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "--executor", "ray",
                        "--shared-folder", str(tmp_path / "nowhere"))
    assert rc == 2 and "is not a folder" in err and len(runs(root)) == 1


def cluster_adapters(root: Path, run_id: str) -> dict[str, dict[str, torch.Tensor]]:
    with RunStore(root / "shpers.sqlite") as store:
        arts = store.artefacts(run_id, kind="cluster_adapter")
    return {Path(a.path).name.split("-")[0]: load_lora_adapter(a.path).state_dict for a in arts}


@pytest.mark.slow
def test_cluster_lora_data_parallel_on_two_workers_equals_the_one_process_run(tmp_path, shpers_cache, cluster):
    root = make_workspace(tmp_path)
    common = ["--model", "tiny-qwen2", "-q", *FAST, *SAME, "--param", "train.batch_size=3", "--param", "k=2"]
    rc, _, err = shpers(root, "run", "cluster_lora", "--name", "one", *common)
    assert rc == 0, err
    rc, _, err = shpers(root, "run", "cluster_lora", "--name", "two workers", "--param", "workers=2", *common)
    assert rc == 0, err
    by_name = {r.name: r for r in runs(root)}
    one, ddp = cluster_adapters(root, by_name["one"].id), cluster_adapters(root, by_name["two workers"].id)
    assert sorted(one) == sorted(ddp) == ["cluster_0", "cluster_1"]
    for name in one:
        assert_same_adapters(one[name], ddp[name], tol=1e-5)
    lines = log_lines(root, by_name["two workers"].id)
    assert sum("data-parallel on 2 Ray Train workers" in m for m in lines) == 2, lines
    with RunStore(root / "shpers.sqlite") as store:
        assert store.metrics(by_name["two workers"].id, subset="all") == pytest.approx(
            store.metrics(by_name["one"].id, subset="all"), abs=1e-4)


@pytest.mark.slow
def test_a_lost_ray_train_worker_restarts_the_group_from_the_checkpoint_the_job_holds(tmp_path, shpers_cache,
                                                                                       cluster, cancelled_data_parallel):
    """A cancel leaves the job a checkpoint (deterministically, at step 2); the resumed run's worker 0 is
    then killed as soon as it reports its process, and the group starts again from that checkpoint."""
    from shpers_core.distributed import data_parallel
    from shpers_core.events import CollectingReporter
    from shpers_core.jobs.runner import run_job
    from shpers_core.workspace import Workspace

    root = tmp_path
    one, spec, dp = one_process_and_cancelled_data_parallel(cancelled_data_parallel, root)
    # Stopped while training: a checkpoint, no adapter yet.
    assert list(root.glob(f"runs/{dp.id}/checkpoints/unified/*"))
    assert not list(root.glob(f"runs/{dp.id}/adapters/*"))

    seen = len(data_parallel._WORKER_PIDS)
    killed: list[int] = []
    done = threading.Event()

    def kill_first_worker() -> None:
        while not done.wait(0.01):
            if len(data_parallel._WORKER_PIDS) > seen:
                killed.append(data_parallel._WORKER_PIDS[seen])
                os.kill(killed[0], signal.SIGKILL)
                return

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    try:
        run_job(spec, Workspace.open(root), CollectingReporter(), run_id=dp.id)
    finally:
        done.set()
        killer.join()
    assert killed
    assert {r.name: r for r in runs(root)}["dp"].status == "finished"
    lines = log_lines(root, dp.id)
    lost = [i for i, m in enumerate(lines) if m.startswith("a Ray Train worker was lost on attempt 1 of 3")]
    assert lost, lines
    assert any(m.startswith("resumed train at step ") for m in lines[lost[0]:]), lines
    assert_same_adapters(adapter(root, one), adapter(root, dp.id), tol=1e-5)

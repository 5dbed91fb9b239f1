"""Deletes that delete, cut-short deletes that get finished, cancel from the command line,
workspaces that move or are copied, and results that are all-or-nothing."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_workspace import start_long_training

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.evaluation.table import study_rows
from shpers_core.events import CollectingReporter
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore, StoreError, latest_version
from shpers_core.store.errors import translate
from shpers_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_epochs": 1, "max_length": 64, "max_test_dialogues": 1, "max_new_tokens": 2}


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    return ws


def shpers(ws: Workspace, capsys, *argv: str, answer: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    capsys.readouterr()
    if answer is not None:
        monkeypatch.setattr("builtins.input", lambda prompt="": (print(prompt, end=""), answer)[1])
    rc = main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def stored_run(ws: Workspace, store: RunStore, *, size: int = 3000, parent: str | None = None, method="unified_lora",
               status="finished") -> str:
    """A run row with a folder holding ``size`` bytes of adapter, recorded as an artefact."""
    run_id = store.create_run(method, {}, "tiny-qwen2", "h", ["p1"], parent_run_id=parent)
    folder = ws.run_dir(run_id) / "adapters" / "unified"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * size)
    store.add_artefact(run_id, "adapter", folder)
    store.set_status(run_id, status)
    return run_id


def test_delete_asks_once_naming_what_goes_disk_freed_and_dependents(workspace, capsys, monkeypatch):
    with RunStore(workspace.db_path) as store:
        source = stored_run(workspace, store, size=2_500_000)
        merge = stored_run(workspace, store, parent=source, method="weighted_merge")
    rc, out, err = shpers(workspace, capsys, "runs", "delete", source, answer="n", monkeypatch=monkeypatch)
    assert rc == 2 and "not deleted" in err
    for words in (source, str(workspace.run_dir(source)), "1 files", "frees 2.5 MB", "runs built on it", merge,
                  "weighted_merge", "Delete it? [y/N]"):
        assert words in out, (words, out)
    assert workspace.run_dir(source).exists()

    rc, out, err = shpers(workspace, capsys, "runs", "delete", source, answer="y", monkeypatch=monkeypatch)
    assert rc == 0 and f"deleted {source} (freed 2.5 MB)" in out, err
    assert not workspace.run_dir(source).exists()
    with RunStore(workspace.db_path) as store:
        assert [r.id for r in store.list_runs()] == [merge]
        assert store.db.execute("SELECT count(*) FROM artefacts WHERE run_id = ?", [source]).fetchone()[0] == 0


def test_a_short_prefix_needs_the_confirmation(workspace, capsys, monkeypatch):
    with RunStore(workspace.db_path) as store:
        run_id = stored_run(workspace, store)
    rc, _, err = shpers(workspace, capsys, "runs", "delete", run_id[:3], "--yes")
    assert rc == 2 and "too short" in err and run_id in err and len(err.strip().splitlines()) == 1
    assert workspace.run_dir(run_id).exists()
    rc, out, err = shpers(workspace, capsys, "runs", "delete", run_id[:3], answer="y", monkeypatch=monkeypatch)
    assert rc == 0 and run_id in out, err
    assert not workspace.run_dir(run_id).exists()


def test_a_delete_cut_short_is_finished_by_the_next_open_and_orphans_are_reported(workspace, capsys):
    with RunStore(workspace.db_path) as store:
        doomed, kept = stored_run(workspace, store), stored_run(workspace, store)
        store.set_status(doomed, "deleting")  # what a kill after the first step of a delete leaves
    orphan = workspace.runs_dir / "r20250101-000000-dead"
    (orphan / "adapters").mkdir(parents=True)
    (orphan / "adapters" / "w.bin").write_bytes(b"\0" * 4000)

    rc, out, err = shpers(workspace, capsys, "runs", "list")
    assert rc == 0 and doomed not in out and kept in out, err
    assert not workspace.run_dir(doomed).exists()
    with RunStore(workspace.db_path) as store:
        assert [r.id for r in store.list_runs()] == [kept]

    rc, out, _ = shpers(workspace, capsys, "workspace", "clean")
    assert f"orphan {orphan}" in out and "4.0 KB" in out and orphan.exists()
    rc, out, _ = shpers(workspace, capsys, "workspace", "clean", "--remove")
    assert f"removed {orphan}" in out and not orphan.exists()
    assert workspace.run_dir(kept).exists()
    assert shpers(workspace, capsys, "workspace", "clean")[1].strip() == "nothing to clean"


def test_delete_never_removes_a_recorded_path_outside_the_run_folder(workspace, tmp_path, capsys):
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    with RunStore(workspace.db_path) as store:
        run_id = stored_run(workspace, store)
        store.add_artefact(run_id, "adapter", outside, persona_id="../../victim")  # as an old, unsafe run wrote it
    rc, out, err = shpers(workspace, capsys, "runs", "delete", run_id, "--yes")
    assert rc == 0, err
    assert (outside / "precious.txt").read_text() == "keep"
    assert not workspace.run_dir(run_id).exists()


def test_cancel_a_queued_run_and_a_running_job_from_the_command_line(workspace, capsys):
    with RunStore(workspace.db_path) as store:
        queued = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["p1"])
        finished = stored_run(workspace, store)
    rc, out, _ = shpers(workspace, capsys, "runs", "cancel", queued)
    assert rc == 0 and f"cancelled {queued}" in out
    rc, _, err = shpers(workspace, capsys, "runs", "cancel", finished)
    assert rc == 2 and "is finished" in err

    job, run_id = start_long_training(workspace.root, "--param", "checkpoint_every=1")
    try:
        rc, out, err = shpers(workspace, capsys, "runs", "cancel", run_id)
        assert rc == 0 and f"cancelled {run_id}" in out, err
        assert job.wait(60) == 130
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGKILL)
            job.wait()
    assert (workspace.run_dir(run_id) / "checkpoints" / "unified" / "state.json").exists()


def test_a_moved_or_copied_workspace_uses_its_own_adapters(workspace, tmp_path):
    from shpers_core.jobs.chat import ChatSession

    run_id = run_job(build_spec("unified_lora", TINY, base_model="tiny-qwen2", device="cpu"), workspace,
                     CollectingReporter())
    plan = json.loads((workspace.run_dir(run_id) / "plan.json").read_text())
    assert all(r["adapter"] == f"runs/{run_id}/adapters/unified" for r in plan.values())

    moved = Workspace(tmp_path / "moved")
    shutil.move(workspace.root, moved.root)
    copied = Workspace(tmp_path / "copied")
    shutil.copytree(moved.root, copied.root)
    shutil.rmtree(moved.run_dir(run_id) / "adapters")  # the original's adapters are gone: the copy must not need them
    with RunStore(copied.db_path) as store:
        assert [a.path for a in store.artefacts(run_id)] == [copied.run_dir(run_id) / "adapters" / "unified"]
    session = ChatSession(copied, run_id, "persona_000")
    assert Path(session.plan.adapters["persona_000"].path) == copied.run_dir(run_id) / "adapters" / "unified"


def test_schema_v3_makes_old_absolute_paths_relative_even_after_a_move(workspace, tmp_path):
    from shpers_core.jobs.chat import ChatSession

    run_id = run_job(build_spec("unified_lora", TINY, base_model="tiny-qwen2", device="cpu"), workspace,
                     CollectingReporter())
    old_root = "/somewhere/else/ws"  # where the workspace was when a v1 store recorded it
    plan_file = workspace.run_dir(run_id) / "plan.json"
    plan = {pid: {**r, "adapter": f"{old_root}/{r['adapter']}"} for pid, r in json.loads(plan_file.read_text()).items()}
    plan_file.write_text(json.dumps(plan))
    with sqlite3.connect(workspace.db_path) as db:
        db.execute("UPDATE artefacts SET path = ? || '/' || path", [old_root])
        db.execute(f"PRAGMA user_version = {latest_version() - 1}")  # before the relative-paths migration
    db.close()
    with RunStore(workspace.db_path) as store:
        assert store.schema_version == latest_version()
        rows = [r[0] for r in store.db.execute("SELECT path FROM artefacts")]
        assert rows == [f"runs/{run_id}/adapters/unified"]
    session = ChatSession(workspace, run_id, "persona_000")
    assert Path(session.plan.adapters["persona_000"].path) == workspace.run_dir(run_id) / "adapters" / "unified"


def test_results_are_stored_whole_or_not_at_all(workspace, capsys, monkeypatch):
    def full_disk(self, run_id, rows):
        raise translate(sqlite3.OperationalError("database or disk is full"), self.path)

    monkeypatch.setattr(RunStore, "add_predictions", full_disk)
    reporter = CollectingReporter()
    with pytest.raises(StoreError, match="disk full"):
        run_job(build_spec("unified_lora", TINY, base_model="tiny-qwen2", device="cpu"), workspace, reporter)
    monkeypatch.undo()
    run_id = reporter.of_kind("failed")[0].run_id
    with RunStore(workspace.db_path) as store:
        assert store.get_run(run_id).status == "failed"
        assert store.metrics(run_id, subset="all") == {} and store.persona_scores(run_id) == {}
    rc, out, _ = shpers(workspace, capsys, "runs", "show", run_id)
    assert "no metrics: the run is failed" in out and "embedding_similarity" not in out
    with RunStore(workspace.db_path) as store:
        # Metrics written by an older version before it failed are not shown either.
        store.set_metrics(run_id, {"embedding_similarity": 0.5})
        row = study_rows(store, [run_id])[0]
        assert row.status == "failed" and row.mean is None
    rc, out, _ = shpers(workspace, capsys, "runs", "list")
    assert "50.00" not in out


def test_disk_io_error_under_a_file_size_limit_says_so(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < 2**30:
        pytest.skip("the hard file size limit is already lower")
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**30, hard))
    try:
        message = str(translate(sqlite3.OperationalError("disk I/O error"), tmp_path / "shpers.sqlite"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "disk I/O error" in message and "file size limit" in message and "ulimit -f" in message


def test_a_newline_in_an_old_run_name_cannot_fake_a_row(workspace, capsys):
    with RunStore(workspace.db_path) as store:
        real = stored_run(workspace, store)
        store.update_run(real, name="mine\nr2099-fake finished unified_lora 3 99.99")
    rc, out, _ = shpers(workspace, capsys, "runs", "list")
    assert rc == 0 and len(out.strip().splitlines()) == 2 and "mine\\nr2099-fake" in out


KILLED_DELETE = """
import sys
from shpers_core.jobs.delete import delete_run
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace
ws = Workspace.open(sys.argv[1])
with RunStore(ws.db_path) as store:
    delete_run(ws, store, sys.argv[2])
"""


def test_a_delete_killed_midway_never_leaves_a_folder_without_its_run(tmp_path, capsys):
    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        run_id = stored_run(ws, store)
    many = ws.run_dir(run_id) / "checkpoints"
    many.mkdir()
    for i in range(8_000):  # a large run: removing it takes long enough to be killed midway
        (many / f"{i}.bin").touch()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DELETE, str(ws.root), run_id], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(ws.db_path) as db:
                row = db.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()
            db.close()
            if row and row[0] == "deleting":
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the delete ended with {proc.returncode} before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(ws.db_path) as db:
        row = db.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()
    db.close()
    # Whenever the kill came: the rows go last, so a folder never outlives its run.
    assert row is not None or not ws.run_dir(run_id).exists()
    if row is not None:
        assert row[0] == "deleting"
    assert shpers(ws, capsys, "runs", "list")[0] == 0  # the next open finishes the delete
    assert not ws.run_dir(run_id).exists()
    with RunStore(ws.db_path) as store:
        assert store.list_runs() == []

"""Workspaces with a small generated dataset, and the CLI called in-process: shared by the CLI and Ray tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

from shpers_core.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def make_workspace(root: Path, personas: int = 3) -> Path:
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.workspace import Workspace

    write_jsonl(generate_dataset(personas, 9, seed=1), Workspace.open(root).dataset_path)
    return root


def shpers(root: Path, *argv: str) -> tuple[int, str, str]:
    """``shpers --workspace ROOT ARGV...`` in this process: (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["--workspace", str(root), *argv])
    return rc, out.getvalue(), err.getvalue()


def start_long_training(root: Path, *params: str) -> tuple[subprocess.Popen, str]:
    """``shpers run unified_lora`` on tiny-qwen2 for 200 epochs in a child process, returned once its run has
    trained a step: (the process, its run id). ``params`` are more ``--param key=value`` words."""
    from shpers_core.store import RunStore

    argv = [sys.executable, "-m", "shpers_core.cli.main", "--workspace", str(root), "run", "unified_lora",
            "--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "num_epochs=200", "--param", "max_length=64",
            *params]
    job = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    run_id = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run_id is None and job.poll() is None:
        time.sleep(0.5)
        with RunStore(Path(root) / "shpers.sqlite") as store:
            running = store.list_runs(status="running")
            if running and store.curves(running[0].id):
                run_id = running[0].id
    if run_id is None:
        job.kill()
        job.wait()
        raise AssertionError("the job never started training")
    return job, run_id

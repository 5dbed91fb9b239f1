"""Ray workers' scratch folders: removed when the worker ends, and swept by the next worker when a
killed one left its folder behind; a live worker's folder is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shpers_core.distributed.scratch import worker_scratch

pytest.importorskip("fcntl")

HOLD = """
import sys, time
from shpers_core.distributed.scratch import worker_scratch
with worker_scratch(sys.argv[1]) as path:
    (path / "checkpoint.pt").write_bytes(b"x" * 1000)
    print(path, flush=True)
    time.sleep(120)
"""


def _worker_holding_scratch(kind: str, tmp: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", HOLD, kind], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp)})
    return child, Path(child.stdout.readline().strip())


def test_a_killed_workers_scratch_is_swept_and_a_live_ones_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kind = "test"
    killed, killed_path = _worker_holding_scratch(kind, tmp_path)
    live, live_path = _worker_holding_scratch(kind, tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert killed_path.is_dir()  # a killed worker cannot clean up after itself
        with worker_scratch(kind) as mine:
            assert mine.is_dir() and mine.parent == killed_path.parent
            assert not killed_path.exists()
            assert (live_path / "checkpoint.pt").exists()
        assert not mine.exists()  # a worker that ends removes its own
        assert (live_path / "checkpoint.pt").exists()
    finally:
        live.kill()
        live.wait()


def test_a_shared_parent_that_is_not_ours_is_not_used(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"shpers-test-{os.getuid()}").symlink_to(elsewhere)  # planted in a shared /tmp
    with worker_scratch("test") as path:
        assert path.parent == tmp_path and path.is_dir()
    assert not list(elsewhere.iterdir())

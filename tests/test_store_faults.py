import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shpers_core.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parents[1]


def make_db(path):
    with RunStore(path) as store:
        rid = store.create_run("lora", {}, "m", "h", ["p1"])
        store.add_curve_points(rid, [("train", "train", 0, 1.0)])
    return rid


def test_read_only_open_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "s.sqlite"
    rid = make_db(path)
    with RunStore(path, read_only=True) as store:
        assert store.curves(rid)["train"].points == [(0, 1.0)]
        with pytest.raises(StoreError, match=r"cannot write to .*s\.sqlite: read-only"):
            store.add_curve_points(rid, [("train", "train", 1, 0.5)])
        with pytest.raises(StoreError, match="read-only"):
            store.create_run("lora", {}, "m", "h", [])
        assert store.curves(rid)["train"].points == [(0, 1.0)]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_workspace_folder(tmp_path):
    folder = tmp_path / "ws"
    folder.mkdir()
    path = folder / "s.sqlite"
    rid = make_db(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match=r"cannot (write to|open) .*s\.sqlite"):
            with RunStore(path) as store:
                store.add_curve_points(rid, [("train", "train", 1, 0.5)])
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_disk_full_is_clear_and_loses_only_the_failed_batch(tmp_path):
    path = tmp_path / "s.sqlite"
    rid = make_db(path)
    with RunStore(path) as store:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        # A file size cap is a real SQLITE_FULL, the same fault a full disk gives.
        store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError, match=r"cannot write to .*s\.sqlite: disk full"):
            store.add_curve_points(rid, [("train", "train", s, 0.5) for s in range(1, 20000)])
        assert store.curves(rid)["train"].points == [(0, 1.0)]
        store.log(rid, "still writable once space is back")
    with RunStore(path) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = textwrap.dedent("""
    import sys
    from shpers_core.store import RunStore
    store = RunStore(sys.argv[1])
    run_id = sys.argv[2]
    store.start_run(run_id)
    step = 0
    while True:
        store.add_curve_points(run_id, [("train", "train", step + i, 1.0 / (step + i + 1)) for i in range(50)])
        step += 50
        if step == 500:
            print("ready", flush=True)
""")


def test_process_killed_mid_write_leaves_a_consistent_file(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        rid = store.create_run("lora", {}, "m", "h", ["p1"])
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), rid], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with RunStore(path) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        steps = store.curves(rid)["train"].steps
        # Batches are atomic: whole batches only, in order, none half-written.
        assert len(steps) >= 500 and len(steps) % 50 == 0 and steps == list(range(len(steps)))
        run = store.get_run(rid)
        assert run.status == "interrupted" and str(proc.pid) in run.error

"""Ctrl+C stops a long command at its next step with a checkpoint; a second Ctrl+C stops at once."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import pytest
from cli_workspace import start_long_training

from shpers_core.cli.stopping import FIRST_CTRL_C, stop_on_signals
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import Reporter
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def test_the_first_ctrl_c_asks_to_stop_and_the_second_interrupts():
    reporter, said = Reporter(), io.StringIO()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_on_signals(reporter, said):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert reporter.should_stop() and FIRST_CTRL_C in said.getvalue()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before
    stopped = Reporter()
    with stop_on_signals(stopped, said):
        os.kill(os.getpid(), signal.SIGTERM)  # `shpers runs cancel`
        time.sleep(0.05)
    assert stopped.should_stop()


def test_ctrl_c_cancels_a_training_run_with_a_checkpoint_it_resumes_from(tmp_path, shpers_cache):
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    job, run_id = start_long_training(ws.root)
    try:
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 130 and FIRST_CTRL_C in err
    with RunStore(ws.db_path) as store:
        assert store.get_run(run_id).status == "cancelled"  # not left "running" for a later open to find
    state = ws.run_dir(run_id) / "checkpoints" / "unified" / "state.json"
    assert json.loads(state.read_text())["step"] > 0  # the steps trained so far are kept

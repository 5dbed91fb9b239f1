"""Jobs and curves: resume keeps its row, every event reaches the log, ETA for the whole job, one legend entry."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from app_window import generated_workspace, open_window  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from shpers_core.jobs.estimate import JobEstimate  # noqa: E402
from shpers_core.jobs.spec import build_spec  # noqa: E402
from shpers_gui.job_queue import RUNNING, Job  # noqa: E402
from shpers_gui.widgets.jobs_view import format_eta  # noqa: E402
from shpers_gui.widgets.plot_export import export_plot  # noqa: E402
from shpers_gui.widgets.results_view import RUN_ID_ROLE  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]
TINY = {"train.num_epochs": 1, "eval.max_new_tokens": 4, "eval.max_test_dialogues": 1}


@pytest.fixture
def window(qtbot, tmp_path):
    with open_window(qtbot, generated_workspace(tmp_path / "ws", 2), tmp_path) as win:
        yield win


def test_cancel_and_resume_stay_in_one_row_with_every_event_in_the_log(window, qtbot, tmp_path):
    launcher, jobs = window.launcher, window.jobs
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    launcher.form.set_values({**TINY, "train.num_epochs": 30})
    launcher.run_name.setText("long one")
    [job] = launcher.queue_job()
    qtbot.waitUntil(lambda: job.done > 0, timeout=60000)
    jobs.table.selectRow(0)
    jobs.cancel_selected()
    assert "cancel requested" in jobs.log.toPlainText()  # shown at once, not after the next refresh
    qtbot.waitUntil(lambda: job.status == "cancelled", timeout=60000)
    model = jobs.model
    assert model.index(0, 5).data() == "long one"
    assert model.index(0, 5).data(Qt.ItemDataRole.ToolTipRole) == f"run {job.run_id}"
    jobs.resume_selected()
    assert len(window.session.jobs.jobs) == 1 and model.rowCount() == 1
    qtbot.waitUntil(lambda: job.status == "running" and job.done > 0, timeout=60000)
    log = jobs.log.toPlainText()
    assert "resume requested" in log and "phase: training" in log
    jobs.cancel_selected()
    qtbot.waitUntil(lambda: job.status == "cancelled", timeout=60000)
    jobs.show_stored_curves(job.run_id)  # the same run from the store: still one entry
    assert jobs.plot.legend_labels() == ["long one"]
    path = export_plot(jobs.plot.plot, tmp_path / "curves.svg")
    svg = path.read_text()
    assert "<svg" in svg and ("<path" in svg or "<polyline" in svg)
    png = export_plot(jobs.plot.plot, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_eta_covers_evaluation_while_training():
    spec = build_spec("unified_lora", base_model="tiny-qwen2")
    est = JobEstimate(personas=2, train_dialogues=10, test_turns=100, steps=20, train_tokens=1000,
                      tokens_per_s=10.0, turns_per_s=0.5, measured_in="r1")
    job = Job(spec, status=RUNNING, phase="training", done=10, total=20, estimate=est)
    job.phase_started_at = time.monotonic() - 30  # 10 of 20 steps in 30 s: 30 s of training left
    left, complete = job.job_eta()
    assert complete and left == pytest.approx(30 + 100 / 0.5, abs=1)
    job.phase, job.done, job.total = "generate", 50, 100
    left, complete = job.job_eta()
    assert complete and left == pytest.approx(30, abs=1)
    job.phase, job.estimate = "training", JobEstimate(2, 10, 100, 20, 1000, 10.0, None, "")
    left, complete = job.job_eta()
    assert not complete and format_eta(left, complete).startswith("≥ ")


def _dtype_shown(win, run_id: str) -> str:
    results = win.results
    results.refresh()
    model = results.model
    column = model.COLUMNS.index("Model dtype")
    (row,) = [r for r in range(model.rowCount()) if model.index(r, 0).data(RUN_ID_ROLE) == run_id]
    return model.index(row, column).data()


def test_the_dtype_chosen_in_the_launcher_is_the_runs_and_shown_after_a_restart(qtbot, tmp_path):
    root = generated_workspace(tmp_path / "ws", 2)
    with open_window(qtbot, root, tmp_path) as win:
        launcher = win.launcher
        # The automatic choice says what it is on this machine once the engine has looked.
        qtbot.waitUntil(lambda: launcher.dtype.itemText(0) != "automatic", timeout=60000)
        assert launcher.device.itemText(0) == "automatic (cpu here)"
        assert launcher.dtype.itemText(0) in ("automatic (float32 here)", "automatic (bfloat16 here)")
        launcher.set_method("unified_lora")
        launcher.base_model.setCurrentText("tiny-qwen2")
        launcher.form.set_values(TINY)
        launcher.device.setCurrentIndex(launcher.device.findData("cpu"))
        launcher.dtype.setCurrentIndex(launcher.dtype.findData("bfloat16"))
        [job] = launcher.queue_job()
        assert (job.spec.device, job.spec.dtype) == ("cpu", "bfloat16")
        qtbot.waitUntil(lambda: job.status == "finished", timeout=180000)
        # (Where bf16 is slower than float32, as on a CPU without AMX, the line also says what automatic takes.)
        assert "base model tiny-qwen2 in bfloat16 on cpu (set in the run" in win.jobs.log.toPlainText()
        assert _dtype_shown(win, job.run_id) == "bfloat16"
    with open_window(qtbot, root, tmp_path) as win:
        assert _dtype_shown(win, job.run_id) == "bfloat16"

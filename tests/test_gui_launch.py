"""Launching must not surprise: no personas means nothing to queue, costs shown and confirmed, names unique."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui import engine  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


@pytest.fixture
def window(qtbot, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate_dataset(n_personas=4, dialogues_per_persona=6), ws.dataset_path)
    session = Session(ws.root)
    win = MainWindow(session, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    qtbot.waitUntil(lambda: session.dataset is not None, timeout=30000)
    session.jobs.max_running = 0  # nothing starts: these tests check what is queued
    launcher = win.launcher
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    yield win
    for job in list(session.jobs.active()):
        session.jobs.cancel(job)
    win.close()


def _answer(monkeypatch, reply):
    asked = []

    def question(_parent, _title, text, *_a, **_k):
        asked.append(text)
        return reply
    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def test_no_persona_checked_means_nothing_can_be_queued(window, monkeypatch):
    launcher = window.launcher
    monkeypatch.setattr(QMessageBox, "warning", lambda *_a, **_k: None)
    assert launcher.queue_button.isEnabled()
    next(b for b in launcher.findChildren(type(launcher.queue_button)) if b.text() == "None").click()
    assert launcher.checked_personas() == []
    assert not launcher.queue_button.isEnabled() and not launcher.sweep_button.isEnabled()
    assert "No persona checked" in launcher.persona_count.text()
    assert launcher.queue_job() == []  # the Ctrl+R shortcut too
    assert window.session.jobs.jobs == []
    launcher.set_personas(["persona_001"])
    assert launcher.queue_button.isEnabled()
    [job] = launcher.queue_job()
    assert job.spec.personas == ["persona_001"]


def test_the_cost_is_shown_and_a_long_job_is_confirmed(window, monkeypatch):
    launcher = window.launcher
    launcher.set_personas(["persona_000", "persona_001"])
    estimate = launcher.update_cost()
    assert estimate.personas == 2 and estimate.train_dialogues > 0 and estimate.steps > 0
    assert "No time estimate: no finished run of this base model has measured this machine's training or " \
           "evaluation speed" in launcher.cost.text()
    # A speed measured on an earlier run of this model times the job.
    with RunStore(window.session.workspace.db_path) as store:
        rid = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["persona_000"])
        store.set_metrics(rid, {"train_tokens_per_s": 1.0, "eval_turns_per_s": 0.01}, subset="info")
        store.finish_run(rid)
    estimate = launcher.update_cost()
    assert estimate.seconds > 600 and "About" in launcher.cost.text() and rid in launcher.cost.text()
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    assert launcher.queue_job() == [] and "This will take about" in asked[0]
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    assert len(launcher.queue_job()) == 1


def test_the_sweep_box_says_how_many_runs_and_how_long_as_it_is_typed(window, qtbot):
    launcher = window.launcher
    launcher.set_method("unified_lora")
    launcher.set_personas(["persona_000", "persona_001"])
    assert launcher.update_sweep_cost() == ""  # nothing typed, nothing said
    launcher.sweep_param.setCurrentIndex(launcher.sweep_param.findData("train.learning_rate"))
    launcher.sweep_values.setText("1e-4, 1e-3")
    launcher.sweep_seeds.setText("0 1")
    qtbot.waitUntil(lambda: launcher.sweep_cost.text().startswith("4 runs, no time estimate yet"), timeout=5000)
    with RunStore(window.session.workspace.db_path) as store:
        rid = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["persona_000"])
        store.set_metrics(rid, {"train_tokens_per_s": 100.0, "eval_turns_per_s": 1.0}, subset="info")
        store.finish_run(rid)
    estimates = [launcher.update_cost()] * 4  # the same job four times over, bar the rate and seed
    total = sum(e.seconds for e in estimates)
    assert launcher.update_sweep_cost() == f"4 runs, about {engine.get('format_duration')(total)}."
    launcher.sweep_values.setText("1e-4, fast")
    qtbot.waitUntil(lambda: "Cannot queue yet" in launcher.sweep_cost.text(), timeout=5000)
    assert "'fast' is not a valid float" in launcher.sweep_cost.text()


def test_an_empty_parameter_is_refused_with_its_name(window, monkeypatch, qtbot):
    launcher = window.launcher
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    launcher.form.fields["lora.target_modules"].widget.setText("")
    assert launcher.queue_job() == []
    assert "target_modules" in shown[0] and "empty" in shown[0]
    qtbot.waitUntil(lambda: "target_modules" in launcher.cost.text(), timeout=5000)


def test_a_taken_run_name_is_offered_with_a_number(window, monkeypatch):
    launcher = window.launcher
    with RunStore(window.session.workspace.db_path) as store:
        store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["persona_000"], name="lr test")
    launcher.run_name.setText("lr test")
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    [job] = launcher.queue_job()
    assert job.spec.name == "lr test (2)" and "“lr test (2)”" in asked[0]
    [job] = launcher.queue_job()  # the waiting job holds "(2)" already
    assert job.spec.name == "lr test (3)"
    _answer(monkeypatch, QMessageBox.StandardButton.No)
    assert launcher.queue_job() == []


def test_a_sweep_and_a_study_take_the_device_and_dtype_chosen(window, monkeypatch):
    launcher = window.launcher
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    [job] = launcher.queue_job()
    assert (job.spec.device, job.spec.dtype) == (None, None)  # automatic: the engine picks where it runs
    launcher.device.setCurrentIndex(launcher.device.findData("cpu"))
    launcher.dtype.setCurrentIndex(launcher.dtype.findData("float32"))
    launcher.sweep_param.setCurrentIndex(launcher.sweep_param.findData("train.learning_rate"))
    launcher.sweep_values.setText("1e-4, 1e-3")
    sweep = launcher.queue_sweep()
    study = launcher.queue_study()
    assert len(sweep) == 2 and len(study) > 3
    assert {(j.spec.device, j.spec.dtype) for j in sweep + study} == {("cpu", "float32")}


def test_a_stored_run_opens_in_the_launcher_and_queues_as_it_was_with_one_change(window, monkeypatch):
    from shpers_core.jobs.spec import build_spec

    launcher, session = window.launcher, window.session
    spec = build_spec("cluster_lora", {"method_params.k": 2, "train.learning_rate": 5e-4, "lora.rank": 4},
                      base_model="tiny-qwen2", personas=["persona_001", "persona_003"], name="clusters",
                      dtype="float32")
    with RunStore(session.workspace.db_path) as store:
        run_id = store.create_run(spec.method, spec.to_dict(), spec.base_model, "h", spec.personas, name=spec.name)
    window.results.refresh()
    menu = window.results.run_menu(run_id)
    next(a for a in menu.actions() if a.text() == "Run again with changes…").trigger()
    assert window.tabs.currentWidget() is launcher
    assert launcher.checked_personas() == ["persona_001", "persona_003"]
    assert launcher.dtype.currentData() == "float32" and launcher.device.currentData() is None
    message = window.statusBar().currentMessage()
    assert "the settings of run clusters" in message
    assert "it ran on other data" in message  # its dataset hash is not the loaded dataset's
    launcher.form.set_values({"train.num_epochs": 1})  # the one change
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    [job] = launcher.queue_job()
    assert job.spec.name == "clusters (2)" and job.spec.train.num_epochs == 1
    assert job.spec.replace(name=spec.name, train=spec.train) == spec


def test_a_run_of_a_method_this_build_lacks_is_refused_in_one_message(window, monkeypatch):
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text, *_a, **_k: warned.append((title, text)))
    with RunStore(window.session.workspace.db_path) as store:
        run_id = store.create_run("gone_method", {"method": "gone_method"}, "tiny-qwen2", "h", ["persona_000"],
                                  name="old")
    window.launch_like(run_id)
    assert warned and warned[0][0] == "Cannot run it again" and "unknown method 'gone_method'" in warned[0][1]
    assert window.tabs.currentWidget() is not window.launcher


def test_a_waiting_job_runs_next_unless_it_builds_on_one_still_waiting(window, monkeypatch):
    from shpers_core.jobs.spec import build_spec

    jobs_view, queue = window.jobs, window.session.jobs
    specs = [build_spec(method, base_model="tiny-qwen2", name=name) for method, name in
             (("unified_lora", "first"), ("per_persona_lora", "per persona"), ("weighted_merge", "merge"),
              ("base_model", "quick look"))]
    first, per_persona, merge, look = (queue.submit(s) for s in specs)
    jobs_view.table.selectRow(queue.jobs.index(look))
    assert jobs_view.next_button.isEnabled()
    jobs_view.run_selected_next()
    assert [j.spec.name for j in queue.jobs] == ["quick look", "first", "per persona", "merge"]
    assert jobs_view.selected_job() is look and "moved to run next" in jobs_view.log.toPlainText()
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text, *_a, **_k: warned.append(text))
    jobs_view.table.selectRow(queue.jobs.index(merge))
    jobs_view.run_selected_next()
    assert "builds on a per_persona_lora run, and “per persona” is still waiting" in warned[0]
    assert queue.jobs[-1] is merge  # not moved
    queue.max_running = 1
    queue._start_waiting()
    assert look.status == "running" and first.status == "waiting"


def test_the_window_title_says_how_far_the_queue_is(window):
    from shpers_core.jobs.estimate import JobEstimate
    from shpers_core.jobs.spec import build_spec

    queue = window.session.jobs
    root = str(window.session.root)
    assert window.windowTitle() == f"shpers — {root}"
    minute = JobEstimate(2, 10, 0, 5, 6000, 100.0, None, "r1")  # 6000 tokens at 100 tokens/s: 60 s
    first = queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name="a"), estimate=minute)
    assert window.windowTitle() == f"shpers — 1 job to go, about 60 s left — {root}"
    queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name="b"), estimate=minute)
    assert window.windowTitle() == f"shpers — 2 jobs to go, about 2 min left — {root}"
    queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name="c"))  # no estimate: no time
    assert window.windowTitle() == f"shpers — 3 jobs to go — {root}"
    for job in list(queue.active()):
        queue.cancel(job)
    assert window.windowTitle() == f"shpers — {root}" and first.status == "cancelled"


def test_the_taskbar_asks_for_attention_when_the_queue_is_done(window, monkeypatch):
    from PySide6.QtWidgets import QApplication

    from shpers_core.jobs.spec import build_spec

    alerted = []
    monkeypatch.setattr(QApplication, "alert", lambda widget, *_a: alerted.append(widget))
    queue = window.session.jobs
    a, b = (queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name=n)) for n in ("a", "b"))
    queue.cancel(a)
    assert alerted == []  # b still waits
    queue.cancel(b)
    assert alerted == [window]


def test_the_device_and_dtype_chosen_are_there_after_a_restart(window, qtbot, tmp_path, monkeypatch):
    launcher = window.launcher
    assert launcher.hardware() == {"device": None, "dtype": None}  # a first start: automatic
    launcher.device.setCurrentIndex(launcher.device.findData("cpu"))
    launcher.dtype.setCurrentIndex(launcher.dtype.findData("bfloat16"))
    second = MainWindow(Session(tmp_path / "ws"), settings=QSettings(str(tmp_path / "s.ini"),
                                                                     QSettings.Format.IniFormat), ask_on_close=False)
    qtbot.addWidget(second)
    assert second.launcher.hardware() == {"device": "cpu", "dtype": "bfloat16"}
    # A job queued there carries the remembered choice.
    for box in ("question", "warning", "information"):  # never a modal dialog in a test
        monkeypatch.setattr(QMessageBox, box, lambda *_a, **_k: QMessageBox.StandardButton.Yes)
    second.session.jobs.max_running = 0
    second.start()
    qtbot.waitUntil(lambda: second.session.dataset is not None, timeout=30000)
    second.launcher.set_method("unified_lora")
    second.launcher.base_model.setCurrentText("tiny-qwen2")
    (job,) = second.launcher.queue_job()
    assert (job.spec.device, job.spec.dtype) == ("cpu", "bfloat16")
    second.session.jobs.cancel(job)
    # Back to automatic, and a third window starts automatic.
    second.launcher.dtype.setCurrentIndex(0)
    second.launcher.device.setCurrentIndex(0)
    second.close()
    third = MainWindow(Session(tmp_path / "ws"), settings=QSettings(str(tmp_path / "s.ini"),
                                                                    QSettings.Format.IniFormat), ask_on_close=False)
    qtbot.addWidget(third)
    assert third.launcher.hardware() == {"device": None, "dtype": None}
    third.close()


def test_when_a_sweep_ends_its_runs_are_selected_for_the_curve(window, monkeypatch):
    launcher, session = window.launcher, window.session
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    launcher.sweep_param.setCurrentIndex(launcher.sweep_param.findData("lora.rank"))
    launcher.sweep_values.setText("2, 4, 8")
    jobs = launcher.queue_sweep()
    other = launcher.queue_job()[0]  # a job queued beside the sweep is not part of it
    with RunStore(session.workspace.db_path) as store:
        for job, status in zip(jobs, ("finished", "failed", "finished")):
            job.run_id = store.create_run(job.spec.method, job.spec.to_dict(), job.spec.base_model, "h", [],
                                          name=job.spec.name)
            store.start_run(job.run_id)
            if status == "finished":
                store.finish_run(job.run_id)
            else:
                store.fail_run(job.run_id, "boom")
    for i, (job, status) in enumerate(zip(jobs, ("finished", "failed", "finished"))):
        job.status = status
        session.jobs.job_ended.emit(job)
        if i < 2:  # the sweep is not over yet
            assert "Sweep of" not in window.statusBar().currentMessage()
    assert window.statusBar().currentMessage().startswith("Sweep of lora.rank done: 2 runs selected in Results")
    assert set(window.results.selected_run_ids()) == {jobs[0].run_id, jobs[2].run_id}
    other.status = "finished"
    session.jobs.job_ended.emit(other)
    assert "Sweep of" not in window.statusBar().currentMessage()  # said once, for the sweep alone


def test_a_sweep_from_a_run_loaded_to_change_draws_its_curve_through_that_run(window, monkeypatch):
    """Run again with changes… then Queue sweep: the curve goes through the run it started from, as
    `shpers sweep --like RUN` does, but not where the sweep changed another setting as well."""
    from shpers_core.jobs.spec import build_spec

    launcher, session = window.launcher, window.session
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    spec = build_spec("unified_lora", {"train.num_epochs": 2}, base_model="tiny-qwen2", name="around")
    with RunStore(session.workspace.db_path) as store:
        start = store.create_run(spec.method, spec.to_dict(), spec.base_model, "h", [], name=spec.name)
        store.start_run(start)
        store.finish_run(start)

    def sweep_and_finish(values):
        launcher.sweep_param.setCurrentIndex(launcher.sweep_param.findData("lora.rank"))
        launcher.sweep_values.setText(values)
        jobs = launcher.queue_sweep()
        with RunStore(session.workspace.db_path) as store:
            for job in jobs:
                job.run_id = store.create_run(job.spec.method, job.spec.to_dict(), job.spec.base_model, "h", [],
                                              name=job.spec.name)
                store.start_run(job.run_id)
                store.finish_run(job.run_id)
        for job in jobs:
            job.status = "finished"
            session.jobs.job_ended.emit(job)
        return {job.run_id for job in jobs}

    window.launch_like(start)
    swept = sweep_and_finish("2, 4")
    assert set(window.results.selected_run_ids()) == swept | {start}
    assert f"3 runs selected in Results (2 of the sweep and the run it started from ({start}))" in \
        window.statusBar().currentMessage()
    # Another setting changed in the form as well: the loaded run would differ in two, and stays out.
    launcher.form.set_values({**launcher.form.values(), "train.num_epochs": 3})
    swept = sweep_and_finish("16, 32")
    assert set(window.results.selected_run_ids()) == swept


def test_a_merge_run_again_builds_on_what_it_built_on_unless_another_is_chosen(window, monkeypatch):
    from shpers_core.jobs.spec import build_spec

    launcher, session = window.launcher, window.session
    assert not launcher._job_rows.isRowVisible(launcher.source)  # unified LoRA builds on nothing
    ids = {}
    with RunStore(session.workspace.db_path) as store:
        for name, method in (("per persona A", "per_persona_lora"), ("per persona B", "per_persona_lora"),
                             ("per persona on another model", "per_persona_lora")):
            spec = build_spec(method, base_model="smollm2-135m" if "another" in name else "tiny-qwen2", name=name)
            ids[name] = store.create_run(method, spec.to_dict(), spec.base_model, "h", ["persona_000"], name=name)
            store.start_run(ids[name])
            store.finish_run(ids[name], duration_s=1.0)
        merge = build_spec("weighted_merge", {"method_params.k": 2}, base_model="tiny-qwen2", name="merge")
        merge_id = store.create_run("weighted_merge", merge.to_dict(), "tiny-qwen2", "h", ["persona_000"],
                                    name="merge", parent_run_id=ids["per persona A"])
    session.runs_changed.emit()
    window.results.refresh()
    model = window.results.model
    row = next(i for i, (run, _t) in enumerate(model.rows) if run.id == merge_id)
    assert model.data(model.index(row, model.PARAMS)) == "k=2, built on per persona A"
    next(a for a in window.results.run_menu(merge_id).actions() if a.text() == "Run again with changes…").trigger()
    assert launcher._job_rows.isRowVisible(launcher.source)
    listed = [launcher.source.itemData(i) for i in range(launcher.source.count())]
    # The newest, then this base model's finished per-persona runs, newest first.
    assert listed == ["", ids["per persona B"], ids["per persona A"]]
    assert launcher.source.currentData() == ids["per persona A"]
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    [job] = launcher.queue_job()
    assert job.spec.source_run == ids["per persona A"] and job.spec.method_params.k == 2
    launcher.source.setCurrentIndex(0)
    assert launcher.build().source_run == ""
    launcher.set_method("unified_lora")
    assert launcher.build().source_run == ""  # a method that builds on nothing names nothing

"""The app driven offscreen over the real engine on the tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from app_window import generated_workspace, open_window  # noqa: E402
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.events import CollectingReporter, JobCancelled  # noqa: E402
from shpers_core.jobs.runner import run_job  # noqa: E402
from shpers_core.jobs.spec import build_spec, defaults_for, parameter_groups  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow, shortcut_text  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]

TINY = {"train.num_epochs": 1, "eval.max_new_tokens": 4, "eval.max_test_dialogues": 1}


def _queue_tiny_sweep(launcher, parameter: str, values: str) -> list:
    """Queue a unified LoRA sweep on tiny-qwen2 from the Launch tab, as a person types it."""
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    launcher.sweep_param.setCurrentIndex(launcher.sweep_param.findData(parameter))
    launcher.sweep_values.setText(values)
    return launcher.queue_sweep()



@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with 3 personas × 6 dialogues and two finished tiny runs."""
    root = tmp_path_factory.mktemp("ws")
    ws = Workspace.open(root)
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate_dataset(n_personas=3, dialogues_per_persona=6), ws.dataset_path)
    for method, name in (("unified_lora", "unified"), ("system_prompt", "prompted")):
        spec = build_spec(method, {k: v for k, v in TINY.items() if not k.startswith("train.")
                                   or method == "unified_lora"},
                          base_model="tiny-qwen2", name=name)
        run_job(spec, ws, CollectingReporter())
    return root


@pytest.fixture
def window(qtbot, workspace, tmp_path):
    with open_window(qtbot, workspace, tmp_path) as win:
        yield win


def _store(workspace) -> RunStore:
    return RunStore(Workspace.open(workspace).db_path)


def test_param_form_is_built_from_the_engine_specs(window):
    launcher = window.launcher
    launcher.set_method("unified_lora")
    form = launcher.form
    expected = {f"{g}.{s.name}": s for g, cls in parameter_groups("unified_lora").items() for s in cls.specs()}
    assert set(form.fields) == set(expected)
    defaults = defaults_for("unified_lora")
    assert form.values() == {f"{g}.{k}": v for g, values in defaults.items() for k, v in values.items()}
    for key, spec in expected.items():
        widget = form.fields[key].widget
        assert spec.help in widget.toolTip()
        kind = {bool: QCheckBox, int: QSpinBox}.get(spec.type, QComboBox if spec.choices else QLineEdit)
        assert isinstance(widget, kind), key
        if spec.type is int and spec.min is not None:
            assert widget.minimum() >= spec.min
    launcher.set_method("base_model")
    assert "train.learning_rate" not in form.fields and "lora.rank" not in form.fields
    assert set(form.fields) == {f"{g}.{s.name}" for g, cls in parameter_groups("base_model").items()
                                for s in cls.specs()}
    launcher.set_method("unified_lora")
    form.fields["train.learning_rate"].widget.setText("-1")
    with pytest.raises(Exception, match="learning_rate"):
        launcher.build()


def test_personas_tab_lists_personas_and_selects_on_the_map(window, qtbot):
    view = window.personas
    assert view.model.rowCount() == 3
    qtbot.waitUntil(lambda: view.map.data is not None, timeout=60000)
    view.map.persona_clicked.emit("persona_001")
    assert view.selected_ids() == ["persona_001"]
    assert "test" in view.details.toPlainText()
    assert window.session.selected_personas == ["persona_001"]
    view.search.setText("persona_002")
    assert view.proxy.rowCount() == 1


def test_launched_job_draws_its_loss_curve_and_ends_in_results(window, qtbot, workspace):
    launcher = window.launcher
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    launcher.form.set_values(TINY)
    launcher.set_personas(["persona_000", "persona_001"])
    launcher.run_name.setText("from the gui")
    [job] = launcher.queue_job()
    assert window.tabs.currentWidget() is window.jobs
    qtbot.waitUntil(lambda: job.status not in ("waiting", "running"), timeout=120000)
    assert job.status == "finished", job.error or "\n".join(job.log)
    assert job.tokens_per_s > 0  # the Jobs tab showed the training speed while it ran
    # The log follows the whole job: phases, a line per tenth of training, the end.
    assert "phase: training" in "\n".join(job.log) and any(line.startswith("training: ") for line in job.log)
    assert "phase: generate" in "\n".join(job.log) and job.log[-1] == "finished"
    window.jobs.plot.redraw()
    assert window.jobs.plot.point_count(f"job{job.key}") > 0
    qtbot.waitUntil(lambda: job.run_id in [r[0].id for r in window.results.model.rows], timeout=5000)
    row = [r for r in window.results.model.rows if r[0].id == job.run_id][0]
    assert row[0].status == "finished" and row[0].name == "from the gui"
    with _store(workspace) as store:
        assert store.curves(job.run_id)["train"].points


def test_cancel_stops_a_job_and_marks_it_cancelled(window, qtbot, workspace):
    launcher = window.launcher
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    launcher.form.set_values({**TINY, "train.num_epochs": 200})
    [job] = launcher.queue_job()
    qtbot.waitUntil(lambda: job.done > 0, timeout=60000)
    window.jobs.table.selectRow(window.session.jobs.jobs.index(job))
    window.jobs.cancel_selected()
    qtbot.waitUntil(lambda: job.status == "cancelled", timeout=60000)
    with _store(workspace) as store:
        assert store.get_run(job.run_id).status == "cancelled"
    assert window.jobs.resume_button.isEnabled()


def test_a_killed_job_shows_as_interrupted(window, qtbot, workspace):
    launcher = window.launcher
    launcher.set_method("unified_lora")
    launcher.base_model.setCurrentText("tiny-qwen2")
    launcher.form.set_values({**TINY, "train.num_epochs": 200})
    [job] = launcher.queue_job()
    qtbot.waitUntil(lambda: job.done > 0, timeout=60000)
    job.worker.kill()
    qtbot.waitUntil(lambda: job.status == "interrupted", timeout=30000)
    with _store(workspace) as store:
        assert store.get_run(job.run_id).status == "interrupted"


def test_comparing_two_runs_shows_paired_statistics(window, tmp_path):
    results = window.results
    ids = [r.id for r, _ in results.model.rows if r.name in ("unified", "prompted")]
    results.select_runs(ids)
    assert "W/T/L" in results.compare.stats.text()
    assert results.compare.result.n == 3
    assert results.compare.differences.rowCount() == 3
    # Each score says what answered it: the unified run's adapter, the prompted run's system prompt.
    sources = {results.compare.differences.item(0, c).text() for c in (4, 5)}
    assert any(s.startswith("LoRA adapter") for s in sources), sources
    assert any(s.startswith("no adapter (base model) + system prompt") for s in sources), sources
    results.compare.mode.setCurrentIndex(1)
    assert "W/T/L" in results.compare.stats.text()
    text = results.export("md", str(tmp_path / "runs.md"))
    assert "unified" in text and (tmp_path / "runs.md").read_text().startswith("|")
    assert "prompted" in results.study_table_text()


def test_grid_shows_scores_and_replies(window):
    grid = window.grid
    grid.refresh()
    assert grid.model.rowCount() == 3 and grid.model.columnCount() >= 3
    index = grid.proxy.index(0, 1)
    assert index.data() != ""
    grid.table.clicked.emit(index)
    assert "reference" in grid.replies.toPlainText()


def test_chat_streams_a_reply(window, qtbot, workspace):
    chat = window.chat
    with _store(workspace) as store:
        run = next(r for r in store.list_runs(status="finished") if r.name == "unified")
    chat.set_selection("persona_000", run.id)
    chat.max_tokens.setValue(4)
    with qtbot.waitSignal(chat.reply_done, timeout=60000):
        chat.load_test_turn()
    assert chat.reference.toPlainText().strip() and chat.reference_hint.isHidden()
    assert chat.pane_a.history[-1].role == "assistant"
    assert not chat.status.text().startswith("chat failed"), chat.status.text()
    chat.input.setText("turn on the kitchen lights")
    with qtbot.waitSignal(chat.reply_done, timeout=60000):
        chat.send()
    assert [m.role for m in chat.pane_a.history[-2:]] == ["user", "assistant"]
    # A typed message has no reference: the pane says where one comes from instead.
    assert not chat.reference.toPlainText().strip() and not chat.reference_hint.isHidden()


def test_shortcuts_and_status_bar(window):
    keys = shortcut_text(window)
    assert keys["Queue job"] == "Ctrl+R" and keys["Quit"] == "Ctrl+Q"
    assert [keys[name] for name in MainWindow.TABS] == [f"Ctrl+{i}" for i in range(1, 7)]
    assert str(window.session.root) in window.workspace_label.text()


def test_sweep_and_study_queue_one_job_each(window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    queue = window.session.jobs
    queue.max_running = 0  # nothing starts: only what is queued is checked
    launcher = window.launcher
    jobs = _queue_tiny_sweep(launcher, "train.learning_rate", "1e-4, 1e-3")
    assert [j.spec.train.learning_rate for j in jobs] == [1e-4, 1e-3]
    assert all(j.status == "waiting" for j in jobs)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    from shpers_core.jobs.study import STUDY_STEPS

    study = launcher.queue_study()
    assert [j.spec.name for j in study] == [label for label, _m, _o in STUDY_STEPS]
    # Two seeds: a second pass of every row that depends on the seed, after the whole first pass.
    launcher.study_seeds.setText("0, 1")
    seeded = launcher.queue_study()
    second = [j.spec for j in seeded[len(STUDY_STEPS):]]
    assert second and all(s.name.endswith(" seed=1") for s in second)
    assert {s.train.seed for s in second if s.method == "unified_lora"} == {1}
    errors = []
    monkeypatch.setattr(launcher, "_error", lambda title, exc: errors.append(str(exc)))
    launcher.study_seeds.setText("0, one")
    assert launcher.queue_study() == [] and "'one' is not a whole number" in errors[0]
    # A sweep over two seeds: every value once per seed, all of seed 3's before seed 4's.
    launcher.sweep_seeds.setText("3 4")
    sweep_seeded = launcher.queue_sweep()
    assert [(j.spec.train.learning_rate, j.spec.train.seed) for j in sweep_seeded] == [
        (1e-4, 3), (1e-3, 3), (1e-4, 4), (1e-3, 4)]
    assert sweep_seeded[0].spec.name.endswith("learning_rate=0.0001 seed=3")
    launcher.sweep_seeds.setText("3, 3")
    assert launcher.queue_sweep() == [] and "3 repeats" in errors[-1]
    for job in jobs + study + seeded + sweep_seeded:
        queue.cancel(job)
    assert not queue.active()


def test_run_the_whole_study_again_offers_to_continue_it(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from shpers_core.jobs.study import STUDY_STEPS
    from shpers_core.models.device import pick_device, pick_dtype

    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    with open_window(qtbot, ws.root, tmp_path) as win:
        session = win.session
        session.jobs.max_running = 0  # nothing starts: only what is queued is checked
        launcher = win.launcher
        launcher.base_model.setCurrentText("tiny-qwen2")
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
        first = launcher.queue_study()
        assert len(first) == len(STUDY_STEPS)
        by_method = {j.spec.method: j for j in first}
        assert all(j.builds_on is by_method["per_persona_lora"] for j in first
                   if j.spec.method in ("weighted_merge", "sparse_moe"))
        assert all(j.builds_on is by_method["unified_lora"] for j in first
                   if j.spec.method in ("static_prefix", "soft_prompt"))
        for job in first:
            session.jobs.cancel(job)
        # What an earlier session left: the first two rows finished, the third cancelled mid-way.
        with RunStore(ws.db_path) as store:
            ids = []
            for job, status in zip(first[:3], ("finished", "finished", "cancelled")):
                params = {**job.spec.to_dict(), "dtype": pick_dtype(pick_device())}  # as the runner records it
                rid = store.create_run(job.spec.method, params, job.spec.base_model, session.dataset.content_hash(),
                                       job.spec.personas, name=job.spec.name)
                store.start_run(rid)
                store.finish_run(rid) if status == "finished" else store.cancel_run(rid)
                ids.append(rid)
            # The speeds a finished run measured on this machine time what is left.
            store.set_metrics(ids[1], {"train_tokens_per_s": 500.0, "eval_turns_per_s": 2.0}, subset="info")
        asked = []

        def answer(choice):
            def exec_(box):
                asked.append(box.text())
                next(b for b in box.buttons() if b.text() == choice).click()
                return 0
            return exec_

        monkeypatch.setattr(QMessageBox, "exec", answer("Continue the study"))
        jobs = launcher.queue_study()
        assert "2 of 18 rows finished before, 1 stopped and can resume" in asked[0]
        assert "Continuing it runs 16 of them: about " in asked[0] and "Running every row again: about " in asked[0]
        assert [j.spec.name for j in jobs] == [label for label, _, _ in STUDY_STEPS[2:]]
        assert jobs[0].run_id == ids[2] and not any(j.run_id for j in jobs[1:])  # the stopped row resumes
        # Prefixes build on the kept unified row, not on a unified run that finished since; merges on the
        # per-persona row that runs again, the newest when they start.
        on_unified = [j for j in jobs if j.spec.method in ("static_prefix", "soft_prompt")]
        assert len(on_unified) == 5 and all(j.spec.source_run == ids[1] for j in on_unified)
        merges = [j for j in jobs if j.spec.method in ("weighted_merge", "sparse_moe")]
        assert len(merges) == 6 and all(j.spec.source_run == "" and j.builds_on is jobs[0] for j in merges)
        # When a merge starts, the row it builds on has finished: its run is named, whatever finished since.
        jobs[0].status, jobs[0].run_id = "finished", ids[2]
        assert session.jobs.name_source(merges[0]) and merges[0].spec.source_run == ids[2]
        # Had that row failed, the merge does not start on some other per-persona run.
        jobs[0].status = "failed"
        assert not session.jobs.name_source(merges[1])
        assert merges[1].status == "failed" and "builds on “Per-persona LoRA”, which failed" in merges[1].error
        jobs[0].status = "waiting"
        for job in jobs:
            session.jobs.cancel(job)
        monkeypatch.setattr(QMessageBox, "exec", answer("Run every row again"))
        assert len(launcher.queue_study()) == len(STUDY_STEPS)
        monkeypatch.setattr(QMessageBox, "exec", answer("Cancel"))
        assert launcher.queue_study() == []


def test_a_run_stopped_before_a_restart_resumes_from_the_results_tab(qtbot, tmp_path):
    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    steps = []
    stopper = CollectingReporter(should_stop=lambda: len(steps) >= 2)
    stopper.add_sink(lambda e: steps.append(e) if e.kind == "step" else None)
    spec = build_spec("unified_lora", {**TINY, "train.num_epochs": 4}, base_model="tiny-qwen2")
    with pytest.raises(JobCancelled):
        run_job(spec, ws, stopper)
    with RunStore(ws.db_path) as store:
        (stopped,) = store.list_runs()
    assert stopped.status == "cancelled"
    # The app opens afresh: its job queue is empty, the run is in Results.
    with open_window(qtbot, ws.root, tmp_path) as win:
        session = win.session
        action = next(a for a in win.results.run_menu(stopped.id).actions() if a.text() == "Resume from checkpoint")
        assert action.isEnabled()
        action.trigger()
        assert win.tabs.currentWidget() is win.jobs and [j.run_id for j in session.jobs.jobs] == [stopped.id]

        def finished() -> bool:
            with RunStore(ws.db_path) as store:
                return store.get_run(stopped.id).status == "finished"

        qtbot.waitUntil(finished, timeout=120000)
        with RunStore(ws.db_path) as store:
            assert len(store.list_runs()) == 1 and any("resumed" in line.message for line in store.logs(stopped.id))
        again = next(a for a in win.results.run_menu(stopped.id).actions() if a.text() == "Resume from checkpoint")
        assert not again.isEnabled()  # a finished run has nothing to resume


def test_jobs_left_when_the_app_closes_are_offered_when_it_opens_again(qtbot, tmp_path):
    from shpers_gui.pending_jobs import pending_path

    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    with open_window(qtbot, ws.root, tmp_path) as first:
        assert not first.jobs.pending_box.isVisibleTo(first.jobs)
        long = build_spec("unified_lora", {**TINY, "train.num_epochs": 300}, base_model="tiny-qwen2", name="long")
        waiting = build_spec("system_prompt", {"eval.max_new_tokens": 4}, base_model="tiny-qwen2", name="after it")
        running, _ = first.session.jobs.submit(long), first.session.jobs.submit(waiting)
        qtbot.waitUntil(lambda: bool(running.run_id) and running.done > 0, timeout=60000)
    assert pending_path(ws.root).is_file()
    with RunStore(ws.db_path) as store:
        assert store.get_run(running.run_id).status == "cancelled"

    with open_window(qtbot, ws.root, tmp_path) as ignored:  # closed again without acting on the offer: it stays
        assert ignored.jobs.pending_box.isVisibleTo(ignored.jobs)
    with open_window(qtbot, ws.root, tmp_path) as second:
        jobs_tab = second.jobs
        assert jobs_tab.pending_box.isVisibleTo(jobs_tab)
        assert "2 job(s) were left" in jobs_tab.pending_label.text() and "1 had started" in jobs_tab.pending_label.text()
        second.session.jobs.max_running = 0  # only what is queued is checked
        queued = jobs_tab.queue_pending()
        assert [(j.spec.name, j.run_id) for j in queued] == [("long", running.run_id), ("after it", "")]
        assert not pending_path(ws.root).exists() and not jobs_tab.pending_box.isVisibleTo(jobs_tab)
        for job in queued:
            second.session.jobs.cancel(job)
    assert not pending_path(ws.root).exists()  # nothing was active at this close


def test_a_study_merge_left_at_close_still_builds_on_its_row_after_a_restart(qtbot, tmp_path):
    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    with open_window(qtbot, ws.root, tmp_path) as first:
        queue = first.session.jobs
        queue.max_running = 0  # they wait; the test says which ended
        row = queue.submit(build_spec("per_persona_lora", TINY, base_model="tiny-qwen2", name="Per-persona LoRA"))
        merge = queue.submit(build_spec("weighted_merge", {"method_params.k": 2}, base_model="tiny-qwen2",
                                        name="Weighted merge"))
        merge.builds_on = row
        with RunStore(ws.db_path) as store:
            row.run_id = store.create_run("per_persona_lora", row.spec.to_dict(), "tiny-qwen2", "h", [])
        row.status = "finished"
    with open_window(qtbot, ws.root, tmp_path) as second:
        second.session.jobs.max_running = 0
        [again] = second.jobs.queue_pending()
        assert again.spec.name == "Weighted merge" and again.spec.source_run == row.run_id
        second.session.jobs.cancel(again)


def test_a_study_merge_and_its_unfinished_row_left_at_close_are_linked_again_after_a_restart(qtbot, tmp_path):
    ws = Workspace(generated_workspace(tmp_path / "ws", 3))

    def leave(row_run: str = "") -> None:
        with open_window(qtbot, ws.root, tmp_path) as first:
            queue = first.session.jobs
            queue.max_running = 0  # they wait
            row = queue.submit(build_spec("per_persona_lora", TINY, base_model="tiny-qwen2", name="Per-persona LoRA"))
            row.run_id = row_run  # a row that had started: it resumes its run
            merge = queue.submit(build_spec("weighted_merge", {"method_params.k": 2}, base_model="tiny-qwen2",
                                            name="Weighted merge"))
            merge.builds_on = row

    leave()
    with open_window(qtbot, ws.root, tmp_path) as second:
        second.session.jobs.max_running = 0
        row, merge = second.jobs.queue_pending()
        assert merge.builds_on is row and merge.spec.source_run == ""  # named when it starts
        for job in (row, merge):
            second.session.jobs.cancel(job)
    # The row had started; its run finished before the next window (`shpers runs resume`, say).
    with RunStore(ws.db_path) as store:
        started = store.create_run("per_persona_lora", {}, "tiny-qwen2", "h", [])
        store.start_run(started)
        store.cancel_run(started)
    leave(started)
    with RunStore(ws.db_path) as store:
        store.set_status(started, "finished")
    with open_window(qtbot, ws.root, tmp_path) as third:
        third.session.jobs.max_running = 0
        [merge] = third.jobs.queue_pending()
        assert merge.spec.source_run == started
        third.session.jobs.cancel(merge)


def test_a_sweep_left_at_close_still_selects_all_its_runs_when_it_ends_after_a_restart(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    monkeypatch.setattr(QMessageBox, "question", lambda *_a, **_k: QMessageBox.StandardButton.Yes)

    def finish(window, job):
        with RunStore(ws.db_path) as store:
            job.run_id = job.run_id or store.create_run(job.spec.method, job.spec.to_dict(), job.spec.base_model,
                                                        "h", [], name=job.spec.name)
            store.start_run(job.run_id)
            store.finish_run(job.run_id)
        job.status = "finished"
        window.session.jobs.job_ended.emit(job)

    with open_window(qtbot, ws.root, tmp_path) as first:
        first.session.jobs.max_running = 0  # they wait; the test says when each ends
        sweep = _queue_tiny_sweep(first.launcher, "lora.rank", "2, 4, 8")
        other = first.session.jobs.submit(build_spec("system_prompt", {"eval.max_new_tokens": 4}, base_model="tiny-qwen2",
                                                     name="aside"))
        finish(first, sweep[0])
        done_before = sweep[0].run_id
    with open_window(qtbot, ws.root, tmp_path) as second:
        second.session.jobs.max_running = 0
        again = second.jobs.queue_pending()
        assert [j.spec.name for j in again] == [sweep[1].spec.name, sweep[2].spec.name, other.spec.name]
        finish(second, again[2])  # the job beside the sweep ends first: not part of it
        finish(second, again[0])
        assert "Sweep of" not in second.statusBar().currentMessage()
        finish(second, again[1])
        assert second.statusBar().currentMessage().startswith("Sweep of lora.rank done: 3 runs selected in Results")
        assert set(second.results.selected_run_ids()) == {done_before, again[0].run_id, again[1].run_id}


def test_a_study_queued_again_after_a_restart_runs_each_row_once(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from shpers_core.jobs.study import STUDY_STEPS

    ws = Workspace(generated_workspace(tmp_path / "ws", 3))
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda _parent, _title, text, *a, **k: asked.append(text) or QMessageBox.StandardButton.Yes)
    with open_window(qtbot, ws.root, tmp_path) as first:
        first.session.jobs.max_running = 0  # the study waits: the window closes with every row left
        first.launcher.base_model.setCurrentText("tiny-qwen2")
        assert len(first.launcher.queue_study()) == len(STUDY_STEPS)
    for order in ("offer first", "study first"):
        with open_window(qtbot, ws.root, tmp_path) as again:
            queue = again.session.jobs
            queue.max_running = 0
            again.launcher.base_model.setCurrentText("tiny-qwen2")
            assert again.jobs.pending_box.isVisibleTo(again.jobs), order
            steps = [again.jobs.queue_pending, again.launcher.queue_study]
            offered, studied = steps if order == "offer first" else steps[::-1]
            before = offered()
            after = studied()
            assert len(before) == len(after) == len(queue.jobs) == len(STUDY_STEPS), order
            assert [id(j) for j in before] == [id(j) for j in after], order  # the same queued jobs, not copies
            if order == "offer first":  # the study's question says they wait already
                assert f"{len(STUDY_STEPS)} of them are in the Jobs tab already" in asked[-1]
            again.jobs.offer_pending([])  # leave the offer for the next window, as closing writes it again
    with RunStore(ws.db_path) as store:
        assert store.list_runs() == []  # nothing ran


def test_a_bad_dataset_names_where_and_why(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"persona_id": "p1", "character": "x", "messages": [{"role": "user"}]}\n')
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _parent, title, text: shown.append(text))
    window.load_dataset(bad)
    qtbot.waitUntil(lambda: bool(shown), timeout=10000)
    assert "bad.jsonl" in shown[0] and "text" in shown[0]
    assert window.session.dataset_path != bad


def test_results_filter_by_status(window):
    results = window.results
    results.status_filter.setCurrentIndex(results.status_filter.findData("finished"))
    assert results.proxy.rowCount() >= 2
    assert all(results.model.rows[results.proxy.mapToSource(results.proxy.index(r, 0)).row()][0].status
               == "finished" for r in range(results.proxy.rowCount()))

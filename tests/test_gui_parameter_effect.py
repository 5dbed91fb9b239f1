"""The Results tab's "Against a parameter…": a sweep's runs drawn against the parameter they differ in."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402
from stored_runs import add_scored_run, spread  # noqa: E402

from shpers_core.evaluation.parameter_effect import effect_csv, parameter_effect  # noqa: E402
from shpers_core.jobs.spec import flat_defaults  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402
from shpers_gui.widgets.parameter_effect_view import ParameterEffectDialog  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]
N = 12
DEFAULT_LR = flat_defaults("unified_lora")["train.learning_rate"]


@pytest.fixture
def sweep(tmp_path):
    """A learning-rate sweep of unified LoRA (the default in the middle, the highest clearly worse), and a base run."""
    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        ids = {lr: add_scored_run(store, "unified_lora", spread(N, centre, i), name=f"lr={lr:g}",
                                  train_params={"learning_rate": lr})
               for i, (lr, centre) in enumerate(((DEFAULT_LR / 10, 0.58), (DEFAULT_LR, 0.60), (DEFAULT_LR * 10, 0.35)))}
        for lr, rid in ids.items():
            store.add_curve_points(rid, [("train", "val", 10, 2.0 + lr * 100)])
        base = add_scored_run(store, "base_model", spread(N, 0.45, 9), name="base")
    return ws, ids, base


def _window(qtbot, ws, tmp_path):
    win = MainWindow(Session(ws.root), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    return win


def test_a_sweeps_runs_are_drawn_against_their_parameter_and_restart_safe(qtbot, sweep, tmp_path, monkeypatch):
    ws, ids, base = sweep
    for attempt in range(2):  # the second window reads the same curve back from the store
        win = _window(qtbot, ws, tmp_path)
        results = win.results
        results.select_runs(list(ids.values()))
        menu = results.run_menu(ids[DEFAULT_LR])
        assert menu.actions()[0].text() == "Plot the 3 runs against a parameter…"
        dialog = results.show_parameter_effect()
        assert dialog.parameter_box.currentText() == "train.learning_rate"
        table = dialog.table
        cells = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
        assert [row[0] for row in cells] == [f"{DEFAULT_LR / 10:g}", f"{DEFAULT_LR:g}", f"{DEFAULT_LR * 10:g}"]
        assert [row[-1] for row in cells] == ["no difference shown", "reference", "worse"]
        assert cells[2][5] == f"{2.0 + DEFAULT_LR * 1000:.4f}"  # its final validation loss
        assert "(the default)" in dialog.summary.text() and "Below it" in dialog.summary.text()
        assert dialog.loss_plot.isVisibleTo(dialog)
        csv_text = dialog.export_csv(str(tmp_path / f"lr{attempt}.csv"))
        with RunStore(ws.db_path) as store:
            expected = effect_csv(parameter_effect(store, list(ids.values()),
                                                   defaults=flat_defaults("unified_lora")))
        assert csv_text == expected == (tmp_path / f"lr{attempt}.csv").read_text()
        # Persona-dependent turns: the same runs, that subset's scores.
        dialog.subset_box.setCurrentIndex(dialog.subset_box.findData("persona_dependent"))
        assert dialog.effect.subset == "persona_dependent" and dialog.table.rowCount() == 3
        dialog.close()
        win.close()
    # Runs of two methods, or one run, make no curve: the user is told what to select.
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _t, text: told.append(text))
    win = _window(qtbot, ws, tmp_path)
    win.results.select_runs([ids[DEFAULT_LR], base])
    assert win.results.show_parameter_effect() is None and "several methods" in told[-1]
    win.results.select_runs([])
    assert win.results.show_parameter_effect() is None and "Select a run of a sweep" in told[-1]
    win.close()


def test_one_run_brings_its_sweep_found_by_settings_not_names(qtbot, sweep, tmp_path):
    ws, ids, base = sweep
    with RunStore(ws.db_path) as store:
        store.rename_run(ids[DEFAULT_LR * 10], "something else entirely")
        # Another seed at the default pools with it; a rank change is another curve through the same run.
        repeat = add_scored_run(store, "unified_lora", spread(N, 0.62, 21), seed=1, name="again",
                                train_params={"learning_rate": DEFAULT_LR})
        rank = add_scored_run(store, "unified_lora", spread(N, 0.6, 22), train_params={"learning_rate": DEFAULT_LR})
        store.update_run(rank, params={**store.get_run(rank).params, "lora": {"rank": 4}})
    win = _window(qtbot, ws, tmp_path)
    win.results.select_runs([ids[DEFAULT_LR]])
    menu = win.results.run_menu(ids[DEFAULT_LR])
    assert menu.actions()[0].text() == "Plot with its sweep against a parameter…"
    menu.actions()[0].trigger()
    dialog = next(w for w in win.results.findChildren(ParameterEffectDialog))
    assert [dialog.parameter_box.itemText(i) for i in range(dialog.parameter_box.count())] == [
        "train.learning_rate (4 runs)", "lora.rank (3 runs)"]
    assert [p.value for p in dialog.effect.points] == [DEFAULT_LR / 10, DEFAULT_LR, DEFAULT_LR * 10]
    assert dialog.effect.points[1].run_ids == [ids[DEFAULT_LR], repeat]  # the seeds pooled
    dialog.parameter_box.setCurrentIndex(1)
    assert dialog.effect.parameter == "lora.rank" and len(dialog.effect.points) == 2
    dialog.close()
    # The base model's run has no sweep: the window says how to make one.
    base_dialog = win.results.show_parameter_effect([base])
    assert base_dialog.effect is None and "sweep around it first" in base_dialog.summary.text()
    base_dialog.close()
    win.close()


def test_runs_that_pool_badly_say_why_instead_of_a_plot(qtbot, sweep, tmp_path):
    ws, ids, _ = sweep
    with RunStore(ws.db_path) as store:
        # A second run at the default rate, with another rank: it cannot pool with the first.
        other = add_scored_run(store, "unified_lora", spread(N, 0.6, 5), name="rank 4",
                               train_params={"learning_rate": DEFAULT_LR})
        store.update_run(other, params={**store.get_run(other).params, "lora": {"rank": 4}})
    win = _window(qtbot, ws, tmp_path)
    win.results.select_runs([*ids.values(), other])
    dialog = win.results.show_parameter_effect()
    assert [dialog.parameter_box.itemText(i) for i in range(dialog.parameter_box.count())] == [
        "lora.rank", "train.learning_rate"]
    dialog.parameter_box.setCurrentIndex(1)
    assert dialog.effect is None and dialog.table.rowCount() == 0
    assert "also differ in lora.rank" in dialog.summary.text()
    dialog.close()
    win.close()

"""The Results tab over stored runs: Table 5.1 as a table, comparisons that say what they compare."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QTextDocument  # noqa: E402
from stored_runs import add_scored_run, spread  # noqa: E402

from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]
N = 12


@pytest.fixture
def runs(tmp_path):
    """Two base models, each with a unified and a base-model run; the SmolLM2 base is worse than its unified."""
    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        ids = {
            "tiny unified": add_scored_run(store, "unified_lora", spread(N, 0.20, 1), name="tiny unified"),
            "tiny base": add_scored_run(store, "base_model", spread(N, 0.50, 2), name="tiny base"),
            "smol unified": add_scored_run(store, "unified_lora", spread(N, 0.63, 3), base_model="smollm2",
                                           name="smol unified", eval_params={"max_new_tokens": 32}),
            "smol base": add_scored_run(store, "base_model", spread(N, 0.49, 4), base_model="smollm2",
                                        name="smol base", dependent_shift=0.2, eval_params={"max_new_tokens": 32}),
        }
        store.add_curve_points(ids["tiny unified"], [("train", "train", s, 2.0 - 0.1 * s) for s in range(5)])
    return ws, ids


@pytest.fixture
def window(qtbot, runs, tmp_path):
    ws, _ = runs
    win = MainWindow(Session(ws.root), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    yield win
    win.close()


def _plain(rich: str) -> str:
    doc = QTextDocument()
    doc.setHtml(rich)
    return doc.toPlainText()


def test_table_5_1_is_a_sortable_table_grouped_by_model(window, runs, tmp_path):
    _, ids = runs
    dialog = window.results.show_study_table()
    model, proxy = dialog.model, dialog.proxy
    heads = model.headers
    col = {h: i for i, h in enumerate(heads)}
    by_run = {model.index(r, col["Run"]).data(): r for r in range(model.rowCount())}
    smol = by_run["smol base"]
    assert model.index(smol, col["Model"]).data() == "smollm2"
    assert model.index(smol, col["Method"]).data() == "base_model"
    assert model.index(smol, col["vs unified"]).data().startswith("-")  # against SmolLM2's own unified run
    assert model.index(smol, col["Verdict"]).data() == "worse"
    assert model.index(by_run["tiny base"], col["Verdict"]).data() == "better"
    assert model.index(by_run["smol unified"], col["Verdict"]).data() == "baseline"
    assert model.index(smol, col["dep. p (Holm)"]).data() not in ("", "–")
    # The difference's simultaneous interval, in points, lies below zero for a "worse" row.
    low, high = (float(x) for x in model.index(smol, col["95 % CI (simult.)"]).data().strip("[]").split(", "))
    assert low < float(model.index(smol, col["vs unified"]).data()) < high < 0
    assert model.index(by_run["smol unified"], col["95 % CI (simult.)"]).data() == ""
    # Rows of one model stay together.
    models = [model.index(r, col["Model"]).data() for r in range(model.rowCount())]
    assert models in (["tiny-qwen2"] * 2 + ["smollm2"] * 2, ["smollm2"] * 2 + ["tiny-qwen2"] * 2)
    # Sorting by the score column orders rows by number.
    dialog.table.sortByColumn(col["Emb. sim. % (mean ± std)"], Qt.SortOrder.DescendingOrder)
    shown = [proxy.index(r, col["Run"]).data() for r in range(proxy.rowCount())]
    assert shown == [r.run_name for r in sorted(model.rows, key=lambda r: -r.mean)]
    assert shown[0] == "smol unified" and shown[-1] == "tiny unified"
    text = dialog.export("md", str(tmp_path / "t.md"))
    assert "| Model | Dataset | Run | Seeds | Method |" in (tmp_path / "t.md").read_text() and "worse" in text
    dialog.close()


def test_table_5_1_pools_a_seed_sweep_into_one_row_until_told_not_to(window, runs):
    ws, _ = runs
    with RunStore(ws.db_path) as store:
        for seed in (1, 2):  # "tiny unified" again with two more seeds
            add_scored_run(store, "unified_lora", spread(N, 0.21, 20 + seed), name=f"tiny unified {seed}", seed=seed)
    dialog = window.results.show_study_table()
    model = dialog.model
    run_col, seeds_col = model.headers.index("Run"), model.headers.index("Seeds")
    seeds = {model.index(r, run_col).data(): model.index(r, seeds_col).data() for r in range(model.rowCount())}
    assert dialog.pool.isChecked() and len(seeds) == 4
    assert seeds["tiny unified"].startswith("0, 1, 2 (± ") and seeds["tiny base"] == "0"
    assert "| 0, 1, 2 (± " in dialog.markdown()
    dialog.pool.setChecked(False)
    seeds = {model.index(r, run_col).data(): model.index(r, seeds_col).data() for r in range(model.rowCount())}
    assert len(seeds) == 6 and [seeds[f"tiny unified{n}"] for n in ("", " 1", " 2")] == ["0", "1", "2"]
    assert "| 0, 1, 2 (± " not in dialog.markdown()
    dialog.close()


def test_table_5_1_draws_each_rows_difference_and_interval_as_a_forest_plot(window, runs, tmp_path):
    dialog = window.results.show_study_table()
    forest = dialog.forest
    compared = [r for r in dialog.rows if not r.is_baseline]
    # One interval per compared row, the table's own numbers in points; both groups, so each label names
    # its model.
    assert [(name, d, lo, hi) for name, d, lo, hi, _ in forest.drawn] == [
        (f"{r.model}: {r.run_name}", *(pytest.approx(100 * x) for x in (r.diff_vs_unified, r.ci_low, r.ci_high)))
        for r in compared]
    by_name = {name: verdict for name, _, _, _, verdict in forest.drawn}
    assert by_name == {"smollm2: smol base": "worse", "tiny-qwen2: tiny base": "better"}
    ticks = [label for _, label in forest.plot.getAxis("left")._tickLevels[0]]
    assert sorted(ticks) == sorted(by_name)
    # The plot's x range shows zero and every interval.
    (x0, x1), _ = forest.plot.getViewBox().viewRange()
    assert x0 < 100 * min(r.ci_low for r in compared) and x1 > 100 * max(r.ci_high for r in compared)
    assert x0 < 0 < x1
    # Persona-dependent turns: "smol base" scores 0.2 higher there, so its difference shrinks by 20 points.
    overall = dict((n, d) for n, d, *_ in forest.drawn)
    forest.subset.setCurrentText("Persona-dependent turns")
    dependent = dict((n, d) for n, d, *_ in forest.drawn)
    assert dependent["smollm2: smol base"] == pytest.approx(overall["smollm2: smol base"] + 20.0, abs=1e-6)
    assert dependent["tiny-qwen2: tiny base"] == pytest.approx(overall["tiny-qwen2: tiny base"], abs=1e-6)
    from shpers_gui.widgets.plot_export import export_plot
    assert export_plot(forest.plot, tmp_path / "forest.png").stat().st_size > 1000
    # The Findings tab answers the study's questions from the same rows; these are base-model rows only.
    assert dialog.views.tabText(2) == "Findings"
    assert "No study question can be answered" in dialog.findings.toPlainText()
    dialog.close()


def test_table_5_1_remembers_pooling_and_the_plots_turns_after_a_restart(runs, tmp_path, qtbot):
    ws, _ = runs
    ini = str(tmp_path / "restart.ini")

    def open_window():
        win = MainWindow(Session(ws.root), settings=QSettings(ini, QSettings.Format.IniFormat), ask_on_close=False)
        qtbot.addWidget(win)
        return win

    first = open_window()
    dialog = first.results.show_study_table()
    assert dialog.pool.isChecked() and dialog.forest.subset.currentText() == "All turns"
    dialog.pool.setChecked(False)
    dialog.forest.subset.setCurrentText("Other turns")
    dialog.close()
    first.close()
    second = open_window()
    dialog = second.results.show_study_table()
    assert not dialog.pool.isChecked() and dialog.forest.subset.currentText() == "Other turns"
    dialog.close()
    second.close()


def test_compare_shows_the_whole_verdict_and_warns_about_unlike_runs(window, runs, qtbot):
    _, ids = runs
    results = window.results
    results.select_runs([ids["smol unified"], ids["smol base"]])
    compare = results.compare
    compare.choose(ids["smol unified"], ids["smol base"])
    plain = _plain(compare.stats.text())
    assert f"Wilcoxon p < 0.05 over {N} personas." in plain, plain
    assert not compare.warning.isVisibleTo(compare)  # same model, dataset and settings
    results.select_runs([ids["tiny unified"], ids["smol base"]])
    assert compare.warning.isVisibleTo(compare)
    a_is_tiny = compare.run_a.currentData() == ids["tiny unified"]
    models, tokens = ("tiny-qwen2 vs smollm2", "64 vs 32") if a_is_tiny else ("smollm2 vs tiny-qwen2", "32 vs 64")
    assert f"base model differs: {models}" in compare.warning.text()
    assert f"max new tokens differ: {tokens}" in compare.warning.text()


def test_a_and_b_follow_the_user_and_survive_a_refresh(window, runs):
    _, ids = runs
    results = window.results
    results.select_runs([ids["smol unified"], ids["smol base"], ids["tiny base"]])
    compare = results.compare
    compare.choose(ids["smol base"], ids["smol unified"])
    window.session.runs_changed.emit()
    assert (compare.run_a.currentData(), compare.run_b.currentData()) == (ids["smol base"], ids["smol unified"])
    assert compare.result.mean_diff > 0  # B (unified) − A (base)


def test_compare_takes_a_subset_and_a_metric(window, runs):
    _, ids = runs
    compare = window.results.compare
    window.results.select_runs([ids["smol unified"], ids["smol base"]])
    compare.choose(ids["smol unified"], ids["smol base"])
    overall = compare.result.mean_diff
    compare.subset.setCurrentIndex(compare.subset.findData("persona_dependent"))
    assert compare.result.mean_diff == pytest.approx(overall + 0.2)
    assert "persona-dependent" in _plain(compare.stats.text())
    compare.metric.setCurrentIndex(compare.metric.findData("parameter_f1"))
    assert compare.result is None and "share no scored personas" in compare.stats.text()


def test_runs_are_renamed_tagged_and_filtered_by_tag(window, runs, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    _, ids = runs
    results = window.results
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warned.append(text))
    assert not results.rename(ids["tiny base"], "smol base")
    assert "already named 'smol base'" in warned[0]
    assert results.rename(ids["tiny base"], "tiny, prompted")
    results.set_details(ids["tiny base"], tags=["keep"], notes="the one to beat")
    results.tag_filter.setCurrentIndex(results.tag_filter.findData("keep"))
    assert results.visible_run_ids() == [ids["tiny base"]]
    row = results.proxy.index(0, 0)
    assert row.data() == "tiny, prompted" and "the one to beat" in row.data(Qt.ItemDataRole.ToolTipRole)
    assert ids["tiny base"] in row.data(Qt.ItemDataRole.ToolTipRole)
    assert "made with shpers " in row.data(Qt.ItemDataRole.ToolTipRole) and "torch " in row.data(Qt.ItemDataRole.ToolTipRole)
    results.tag_filter.setCurrentIndex(0)
    assert len(results.visible_run_ids()) == 4


def test_a_finished_runs_curves_open_from_results(window, runs):
    _, ids = runs
    results = window.results
    results.select_runs([ids["tiny unified"]])
    index = results.table.selectionModel().selectedRows()[0]
    results.table.doubleClicked.emit(index)
    assert window.tabs.currentWidget() is window.jobs
    window.jobs.plot.redraw()
    assert window.jobs.plot.point_count(f"run:{ids['tiny unified']}") == 5


def test_the_paired_scatter_shows_the_scores_range_on_both_axes(window, runs):
    _, ids = runs
    compare = window.results.compare
    window.results.select_runs([ids["smol unified"], ids["smol base"]])
    compare.choose(ids["smol unified"], ids["smol base"])
    compare.mode.setCurrentIndex(0)
    (x0, x1), (y0, y1) = compare.plot.getViewBox().viewRange()
    # Both runs score 0.4-0.7 here: the axes span that, the same on x and y, and not far past it.
    assert (x0, x1) == pytest.approx((y0, y1))
    assert 0.2 < x0 < 0.5 and 0.6 < x1 < 0.9


def test_table_5_1_answers_the_study_questions_in_its_findings_tab(tmp_path, qtbot):
    from shpers_gui.widgets.study_table import StudyTableDialog, findings_html

    ws = Workspace.open(tmp_path / "ws")
    with RunStore(ws.db_path) as store:
        base = spread(N, 0.6, 5)
        ids = [add_scored_run(store, "unified_lora", base, name="unified"),
               add_scored_run(store, "per_persona_lora", {p: v - 0.2 - 0.001 * i for i, (p, v) in enumerate(base.items())},
                              name="per persona")]
        dialog = StudyTableDialog(store, ids)
        qtbot.addWidget(dialog)
        dialog.views.setCurrentWidget(dialog.findings)
        text = dialog.findings.toPlainText()
        # Each question in bold with its answer, then its rows; only the questions the table can answer.
        assert "RQ1, does an adapter per persona beat one adapter for everyone" in text
        assert "No: every row scored below unified LoRA." in text and "per persona: -20." in text
        assert "RQ2" not in text and f"No personalisation method beat unified LoRA on {N} personas" in text
        assert "<b>RQ1, " in findings_html(dialog.rows)
        # The report puts the answers, the table and its forest plots in one Markdown file.
        dialog.export_report(str(tmp_path / "report.md"))
        report = (tmp_path / "report.md").read_text()
        assert report.startswith("# Table 5.1\n") and "- **RQ1**, does an adapter per persona beat" in report
        assert "| per persona |" in report and report.count("●") == 2 and "## Differences from unified LoRA, all turns" in report

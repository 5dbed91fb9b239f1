"""Personas and map: the map follows the search, the ring survives a recompute, features show progress."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402
from shpers_gui.widgets.persona_map import feature_cache  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


@pytest.fixture
def view(qtbot, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate_dataset(n_personas=6, dialogues_per_persona=6), ws.dataset_path)
    session = Session(ws.root)
    win = MainWindow(session, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    qtbot.waitUntil(lambda: win.personas.map.data is not None, timeout=120000)
    yield win.personas
    win.close()


def test_the_map_dims_what_the_search_hides_and_a_hidden_click_says_so(view):
    view.search.setText("persona_001")
    assert view.proxy.rowCount() == 1
    assert view.map.is_dimmed("persona_000") and not view.map.is_dimmed("persona_001")
    view.map.persona_clicked.emit("persona_004")
    assert view.search.text() == "" and view.selected_ids() == ["persona_004"]
    assert view.notice.isVisibleTo(view) and "persona_004 was hidden by the search “persona_001”" in view.notice.text()
    assert not view.map.is_dimmed("persona_000")
    assert view.map.legend_label.text().count("cluster") >= 1  # the legend is beside the plot, not over it


def test_the_selection_ring_survives_a_recompute(view, qtbot):
    view.map.persona_clicked.emit("persona_002")
    assert view.map.ring_count() == 1
    old = view.map.data
    view.map.recompute()
    qtbot.waitUntil(lambda: view.map.data is not old, timeout=60000)
    assert view.map.ring_count() == 1


def test_behaviour_features_show_progress_once_then_come_from_the_cache(view, qtbot):
    seen = []
    view.map.progress.valueChanged.connect(lambda v: seen.append((v, view.map.progress.maximum())))
    old = view.map.data
    view.map.features.setCurrentIndex(view.map.features.findData("behaviour"))
    qtbot.waitUntil(lambda: view.map.data is not old and view.map.data.kind == "behaviour", timeout=120000)
    assert seen and all(total > 0 for _v, total in seen) and seen[-1][0] == seen[-1][1]
    assert feature_cache(view.session.dataset, "behaviour", view.session.root / "cache").is_file()
    seen.clear()
    old = view.map.data
    view.map.recompute()
    qtbot.waitUntil(lambda: view.map.data is not old, timeout=60000)
    assert seen == []  # read from the cache: nothing embedded


def test_cluster_colours_stand_out_on_white_and_from_each_other():
    from shpers_gui.widgets.persona_map import cluster_colour

    def luminance(c):
        def lin(v):
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * lin(c.red()) + 0.7152 * lin(c.green()) + 0.0722 * lin(c.blue())

    colours = [cluster_colour(i).color() for i in range(9)]
    for c in colours:
        assert 1.05 / (luminance(c) + 0.05) >= 2.0, c.name()  # WCAG contrast against a white plot
    names = [c.name() for c in colours]
    assert len(set(names)) == len(names)

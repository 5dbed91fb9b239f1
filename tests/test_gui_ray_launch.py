"""The Launch tab's "Run on": this machine or a Ray cluster, remembered for the workspace."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = pytest.mark.gui


def open_window(qtbot, tmp_path, root):
    session = Session(root)
    win = MainWindow(session, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    return win, session


def test_run_on_a_ray_cluster_is_remembered_for_the_workspace(qtbot, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(n_personas=2, dialogues_per_persona=6), ws.dataset_path)
    win, session = open_window(qtbot, tmp_path, ws.root)
    launcher = win.launcher
    assert launcher.run_on.currentData() == "local" and not launcher.ray_address.isEnabled()
    assert session.executor == ("local", "")
    launcher.run_on.setCurrentIndex(launcher.run_on.findData("ray"))
    assert launcher.ray_address.isEnabled()
    launcher.ray_address.setText(" 10.0.0.5:6379 ")
    launcher.ray_address.editingFinished.emit()
    assert session.executor == ("ray", "10.0.0.5:6379")
    win.close()

    win2, session2 = open_window(qtbot, tmp_path, ws.root)
    assert win2.launcher.run_on.currentData() == "ray"
    assert win2.launcher.ray_address.text() == "10.0.0.5:6379"
    assert session2.executor == ("ray", "10.0.0.5:6379")

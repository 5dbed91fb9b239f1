"""The window fits 1024x700 on every tab, and the Help menu explains the app."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from app_window import generated_workspace, open_window  # noqa: E402

from shpers_gui.main_window import MainWindow  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


@pytest.fixture
def window(qtbot, tmp_path):
    # A long workspace path, as a real home folder may have: the status bar must not widen the window.
    root = generated_workspace(tmp_path / ("a-rather-long-folder-name-" * 4) / "ws", 3)
    with open_window(qtbot, root, tmp_path) as win:
        yield win


def test_every_tab_fits_1024_by_700(window, qtbot):
    window.show()
    window.resize(1024, 700)
    for i, name in enumerate(MainWindow.TABS):
        window.tabs.setCurrentIndex(i)
        qtbot.wait(20)
        hint = window.minimumSizeHint()
        assert hint.width() <= 1024 and hint.height() <= 700, (name, hint)
        assert window.width() <= 1024, name


def test_help_menu_has_first_steps_shortcuts_star_and_about(window):
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    items = [a.text().replace("&", "") for a in menus["Help"].actions() if a.text()]
    assert items == ["First steps", "Keyboard shortcuts", "What does ★ mean?", "About shpers"]
    steps = window.help_text("first steps")
    for words in ("Open dataset", "Generate dataset", "Unified LoRA", "Queue job", "Results", "Beside"):
        assert words in steps
    assert "Ctrl+R" in window.help_text("shortcuts") and "Ctrl+T" in window.help_text("shortcuts")
    assert "persona-dependent" in window.help_text("star")
    window.device.setText("device: cpu (2 threads)")
    about = window.help_text("about")
    assert "cpu (2 threads)" in about and "torch" in about and "PySide6" in about and "not installed" not in about
    import torch

    assert torch.__version__ in about
    dialog = window.show_help("about")
    assert dialog.windowTitle() == "About shpers"
    dialog.close()

"""The app's main window opened on a workspace for a pytest-qt test, and closed after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QSettings

from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.workspace import Workspace
from shpers_gui.main_window import MainWindow
from shpers_gui.session import Session


def generated_workspace(root: Path, n_personas: int, dialogues_per_persona: int = 6) -> Path:
    """A workspace at ``root`` holding a small generated dataset; returns its root."""
    ws = Workspace.open(root)
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate_dataset(n_personas=n_personas, dialogues_per_persona=dialogues_per_persona),
                ws.dataset_path)
    return ws.root


@contextmanager
def open_window(qtbot, root: Path, settings_dir: Path) -> Iterator[MainWindow]:
    """The started window on ``root`` (its settings in ``settings_dir``), once the dataset is loaded."""
    session = Session(root)
    win = MainWindow(session, settings=QSettings(str(settings_dir / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    qtbot.waitUntil(lambda: session.dataset is not None, timeout=30000)
    try:
        yield win
    finally:
        win.close()

"""File > Import and the export dialog (results row, chat tab), driven offscreen over the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from shpers_core.data import generate_dataset, load_dataset, write_jsonl  # noqa: E402
from shpers_core.events import CollectingReporter  # noqa: E402
from shpers_core.jobs.runner import run_job  # noqa: E402
from shpers_core.jobs.spec import build_spec  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def workspace(models_cache, tmp_path_factory):
    """3 personas × 6 dialogues and one finished tiny per-persona LoRA run."""
    root = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        ws = Workspace.open(root)
        write_jsonl(generate_dataset(n_personas=3, dialogues_per_persona=6), ws.dataset_path)
        spec = build_spec("per_persona_lora", {"train.num_epochs": 1, "eval.max_new_tokens": 4,
                                               "eval.max_test_dialogues": 1}, base_model="tiny-qwen2", name="pp")
        run_id = run_job(spec, ws, CollectingReporter())
    return root, run_id


@pytest.fixture
def window(qtbot, workspace, tmp_path, shpers_cache):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    session = Session(workspace[0])
    win = MainWindow(session, settings=settings, ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    qtbot.waitUntil(lambda: session.dataset is not None, timeout=30000)
    yield win
    win.close()


def test_file_import_edgewisepersona_replaces_the_dataset_and_shows_routines(window, qtbot, workspace):
    ws = Workspace.open(workspace[0])
    before = load_dataset(ws.dataset_path)
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if "Import" in a.text())
    assert action.isEnabled()
    dialog = window.import_dataset_dialog()
    qtbot.addWidget(dialog)
    # A bad source: the one-line error is shown in the dialog and nothing changes.
    dialog.source.setText(str(DATA / "chat_messages.jsonl"))
    dialog.format.setCurrentIndex(dialog.format.findData("chat"))
    dialog.start()
    qtbot.waitUntil(lambda: "--persona-field" in dialog.status.text(), timeout=30000)
    assert window.session.dataset.persona_ids == before.persona_ids
    dialog.source.setText(str(DATA / "edgewisepersona"))
    dialog.format.setCurrentIndex(dialog.format.findData("edgewisepersona"))
    with qtbot.waitSignal(window.session.dataset_changed, timeout=30000):
        dialog.start()
    try:
        assert window.session.dataset.persona_ids == ["user-001", "user-002", "user-003", "user-004"]
        assert "skipped 1 persona" in window.statusBar().currentMessage()
        text = window.personas.persona_html("user-002")
        assert "Routines (2)" in text and "color warm" in text and "routines 0" in text
    finally:
        write_jsonl(before, ws.dataset_path)  # other tests of this module use the generated set


def test_export_from_the_results_row_and_the_chat_tab(window, qtbot, workspace, tmp_path):
    root, run_id = workspace
    results = window.results
    results.select_runs([run_id])
    dialog = results.export_model()
    qtbot.addWidget(dialog)
    assert dialog.run_id == run_id and dialog.persona.count() == 3
    dialog.format.setCurrentIndex(dialog.format.findData("peft"))
    dialog.folder.setText(str(tmp_path / "peft"))
    with qtbot.waitSignal(dialog.exported, timeout=60000) as signal:
        dialog.start()
    assert "contains: LoRA adapter" in signal.args[0]
    info = json.loads((tmp_path / "peft" / "shpers_export.json").read_text())
    assert info["run"] == run_id and info["persona"] == dialog.persona.currentData()
    # A second export into the same, now non-empty folder is refused with one line in the dialog.
    dialog.start()
    qtbot.waitUntil(lambda: "not empty" in dialog.status.text(), timeout=30000)

    chat = window.chat
    pid = sorted(load_dataset(Workspace.open(root).dataset_path).persona_ids)[1]
    chat.set_selection(pid, run_id)
    dialog = chat.export_model()
    qtbot.addWidget(dialog)
    assert dialog.run_id == run_id and dialog.persona.currentData() == pid
    dialog.format.setCurrentIndex(dialog.format.findData("gguf"))
    dialog.folder.setText(str(tmp_path / "gguf"))
    with qtbot.waitSignal(dialog.exported, timeout=60000):
        dialog.start()
    assert (tmp_path / "gguf" / "adapter.gguf").is_file() and (tmp_path / "gguf" / "Modelfile").is_file()

"""The Results tab deletes with the engine's delete: one confirmation naming the runs, their
folders, the disk freed and the runs built on them; then the folders go with the rows."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    return ws


def stored_run(ws: Workspace, store: RunStore, size: int, parent: str | None = None, name: str = "") -> str:
    run_id = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["persona_000"], parent_run_id=parent, name=name)
    folder = ws.run_dir(run_id) / "adapters" / "unified"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * size)
    store.add_artefact(run_id, "adapter", folder)
    store.set_status(run_id, "finished")
    return run_id


def test_results_delete_confirms_with_disk_freed_and_dependents_then_removes_the_folder(
        qtbot, workspace, tmp_path, monkeypatch):
    with RunStore(workspace.db_path) as store:
        source = stored_run(workspace, store, 1_500_000, name="the source")
        child = stored_run(workspace, store, 10, parent=source, name="built on it")
    session = Session(workspace.root)
    win = MainWindow(session, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    results = win.results
    qtbot.waitUntil(lambda: {source, child} <= {r.id for r, _ in results.model.rows}, timeout=30000)

    asked: list[str] = []
    answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a: (asked.append(text), next(answers))[1])
    results.select_runs([source])
    results.delete_selected()
    assert len(asked) == 1
    for words in (source, "the source", str(workspace.run_dir(source)), "frees 1.5 MB", "runs built on it", child,
                  "built on it"):
        assert words in asked[0], (words, asked[0])
    assert workspace.run_dir(source).exists(), "answering No deleted"

    results.select_runs([source])
    results.delete_selected()
    assert not workspace.run_dir(source).exists()
    with RunStore(workspace.db_path) as store:
        assert [r.id for r in store.list_runs()] == [child]
    qtbot.waitUntil(lambda: source not in {r.id for r, _ in results.model.rows}, timeout=10000)
    win.close()

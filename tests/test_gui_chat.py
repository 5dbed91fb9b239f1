"""Chat that compares: both panes in one batch, a new run replays the conversation, Stop, token limit."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.events import CollectingReporter  # noqa: E402
from shpers_core.jobs.runner import run_job  # noqa: E402
from shpers_core.jobs.spec import build_spec  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402
from shpers_gui.main_window import MainWindow  # noqa: E402
from shpers_gui.session import Session  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]
COVERED = ["persona_000", "persona_001"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("chatws")
    ws = Workspace.open(root)
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate_dataset(n_personas=3, dialogues_per_persona=6), ws.dataset_path)
    evals = {"eval.max_new_tokens": 4, "eval.max_test_dialogues": 1}
    for method, name, extra in (("unified_lora", "unified", {"train.num_epochs": 1}), ("system_prompt", "prompted", {})):
        run_job(build_spec(method, {**evals, **extra}, base_model="tiny-qwen2", name=name, personas=COVERED),
                ws, CollectingReporter())
    with RunStore(ws.db_path) as store:
        ids = {r.name: r.id for r in store.list_runs()}
    return root, ids


@pytest.fixture
def chat(qtbot, workspace, tmp_path):
    root, _ = workspace
    session = Session(root)
    win = MainWindow(session, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     ask_on_close=False)
    qtbot.addWidget(win)
    win.start()
    qtbot.waitUntil(lambda: session.dataset is not None, timeout=30000)
    yield win.chat
    win.close()


def test_beside_replays_the_conversation_and_both_reply_in_one_batch(chat, workspace, qtbot, monkeypatch):
    import shpers_core.evaluation.streaming as streaming

    _, ids = workspace
    chat.set_selection("persona_000", ids["unified"])
    chat.max_tokens.setValue(4)
    chat.input.setText("turn on the kitchen lights")
    with qtbot.waitSignal(chat.reply_done, timeout=60000):
        chat.send()
    first = list(chat.pane_a.replies)
    assert len(first) == 1 and "cut off at the 4-token limit" in chat.pane_a.text.toPlainText()
    assert "unified — Unified LoRA" in chat.pane_a.title.text() and "emb. sim." in chat.pane_a.title.text()
    assert chat.pane_a.source.text().startswith("answers with LoRA adapter")
    # A run put beside answers what was already asked; the first pane keeps its conversation.
    with qtbot.waitSignal(chat.reply_done, timeout=60000):
        chat.run_b.setCurrentIndex(chat.run_b.findData(ids["prompted"]))
    assert chat.pane_a.replies == first and len(chat.pane_b.replies) == 1
    assert "turn on the kitchen lights" in chat.pane_b.text.toPlainText()
    assert "prompted — Persona in system prompt" in chat.pane_b.title.text()
    assert "system prompt" in chat.pane_b.source.text()
    batches = []
    real = streaming.stream_rows
    monkeypatch.setattr(streaming, "stream_rows", lambda base, rows, n: batches.append(len(rows)) or real(base, rows, n))
    chat.input.setText("and the hall")
    with qtbot.waitSignal(chat.reply_done, timeout=60000):
        chat.send()
    assert batches == [2]  # both panes, one batch
    assert [m.role for m in chat.pane_b.history] == ["user", "assistant", "user", "assistant"]
    assert chat.pane_b.history[1].text == chat.pane_b.replies[0]  # each run keeps its own replies


def test_stop_ends_the_reply_at_once(chat, workspace, qtbot):
    _, ids = workspace
    chat.set_selection("persona_001", ids["unified"])
    chat.max_tokens.setValue(2000)
    chat.input.setText("hello")
    chat.send()
    qtbot.waitUntil(lambda: bool(chat.pane_a.reply), timeout=60000)
    assert chat.stop_button.isEnabled()
    with qtbot.waitSignal(chat.reply_done, timeout=30000):
        chat.stop_button.click()
    assert chat.status.text() == "Stopped." and "(stopped)" in chat.pane_a.text.toPlainText()
    assert len(chat.pane_a.replies[0]) < 2000 and not chat.stop_button.isEnabled()
    assert chat.send_button.isEnabled()


def test_a_persona_no_run_covers_says_why(chat):
    chat.persona.setCurrentIndex(chat.persona.findData("persona_002"))
    assert chat.run_a.currentData() is None
    assert "No finished run covers persona_002" in chat.pane_a.title.text()
    chat.input.setText("hello")
    chat.send()
    assert "No finished run covers persona_002" in chat.status.text()

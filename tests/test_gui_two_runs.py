"""Two runs on two of three personas: chat that compares them, and the grid's drill-down.

Chat: both panes in one batch, a new run replays the conversation, Stop, the token limit.
Grid: persona ids stay in view, uncovered cells say so, replies with history and side by side.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from app_window import open_window  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from shpers_core.data import generate_dataset, write_jsonl  # noqa: E402
from shpers_core.events import CollectingReporter  # noqa: E402
from shpers_core.jobs.runner import run_job  # noqa: E402
from shpers_core.jobs.spec import build_spec  # noqa: E402
from shpers_core.store import RunStore  # noqa: E402
from shpers_core.workspace import Workspace  # noqa: E402

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
def window(qtbot, workspace, tmp_path):
    root, _ = workspace
    with open_window(qtbot, root, tmp_path) as win:
        yield win


@pytest.fixture
def chat(window):
    return window.chat


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


def test_a_study_row_named_after_its_method_says_the_method_once(window, workspace):
    root, ids = workspace
    with RunStore(Workspace.open(root).db_path) as store:
        store.update_run(ids["unified"], name="Unified LoRA (1 of 3 epochs)")
    try:
        window.chat.set_selection("persona_000", ids["unified"])
        title = window.chat.pane_a.title.text()
        assert "Unified LoRA (1 of 3 epochs)" in title and title.count("Unified LoRA") == 1
    finally:
        with RunStore(Workspace.open(root).db_path) as store:
            store.update_run(ids["unified"], name="unified")


def test_grid_keeps_personas_in_view_and_drills_down_with_history(window, workspace):
    _, ids = workspace
    grid = window.grid
    grid.refresh()
    assert grid.table.isColumnHidden(0)
    heads = [grid.proxy.headerData(r, Qt.Orientation.Vertical) for r in range(grid.proxy.rowCount())]
    assert heads == COVERED  # row heads do not scroll away with the run columns
    col = 1 + [r.id for r in grid.model.runs].index(ids["unified"])
    grid.table.clicked.emit(grid.proxy.index(0, col))
    text = grid.replies.toPlainText()
    assert "answered by LoRA adapter" in text and "user" in text and "reference" in text
    with RunStore(window.session.workspace.db_path) as store:
        turn = store.predictions(ids["unified"], "persona_000")[0]
    if turn.history:
        assert turn.history[0]["text"] in text  # the dialogue before the turn
    grid.beside.setCurrentIndex(grid.beside.findData(ids["prompted"]))
    text = grid.replies.toPlainText()
    assert "beside: prompted (system_prompt), answered by no adapter (base model) + system prompt" in text
    with RunStore(window.session.workspace.db_path) as store:
        theirs = store.predictions(ids["prompted"], "persona_000")[0].prediction
    assert theirs in text


def test_grid_replies_show_the_turns_where_a_run_loses_most_first(window, workspace):
    import re

    _, ids = workspace
    grid = window.grid
    grid.refresh()
    with RunStore(window.session.workspace.db_path) as store:
        mine = {(p.dialogue_id, p.turn): p for p in store.predictions(ids["unified"], "persona_000")}
        theirs = {(p.dialogue_id, p.turn): p for p in store.predictions(ids["prompted"], "persona_000")}
    assert len(mine) > 1

    def shown() -> list[tuple[str, int]]:
        found = re.findall(r"(\S+) · turn (\d+)", grid.replies.toPlainText())
        return [(dialogue, int(turn) - 1) for dialogue, turn in found]

    col = 1 + [r.id for r in grid.model.runs].index(ids["unified"])
    grid.table.clicked.emit(grid.proxy.index(0, col))
    assert shown() == sorted(mine)  # the dialogues' order by default
    grid.order.setCurrentIndex(grid.order.findData("lowest"))
    metric = "embedding_similarity"
    lowest = sorted(mine, key=lambda k: mine[k].scores[metric])
    assert shown() == lowest != sorted(mine)
    grid.beside.setCurrentIndex(grid.beside.findData(ids["prompted"]))
    assert shown() == sorted(mine, key=lambda k: mine[k].scores[metric] - theirs[k].scores[metric])
    assert "lowest embedding similarity against the run beside first" in grid.replies.toPlainText()
    grid.metric.setCurrentIndex(grid.metric.findData("parameter_f1"))  # the shown turns follow the metric
    assert "lowest parameter f1 against the run beside first" in grid.replies.toPlainText()
    grid.metric.setCurrentIndex(grid.metric.findData("embedding_similarity"))
    grid.order.setCurrentIndex(0)
    grid.beside.setCurrentIndex(0)


def test_a_cell_a_run_did_not_cover_says_so(window, tmp_path):
    from stored_runs import add_scored_run

    grid = window.grid
    store = window.session.store()
    rid = add_scored_run(store, "base_model", {"persona_000": 0.5, "persona_002": 0.4}, name="partial")
    window.session.runs_changed.emit()
    col = 1 + [r.id for r in grid.model.runs].index(rid)
    row = next(r for r in range(grid.proxy.rowCount())
               if grid.proxy.headerData(r, Qt.Orientation.Vertical) == "persona_001")
    index = grid.proxy.index(row, col)
    assert index.data() == "not run"
    grid.table.clicked.emit(index)
    assert "partial did not cover persona_001" in grid.replies.toPlainText()
    assert "0 test turns" not in grid.replies.toPlainText()
    store.delete_run(rid)

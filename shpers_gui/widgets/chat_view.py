"""The Chat tab: talk to a persona's adapter of a finished run, optionally two runs side by side."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from shpers_core.data import Message
from shpers_core.jobs.spec import EvalParams
from shpers_gui import engine
from shpers_gui.workers import run_call


def open_chat(workspace, run_id: str, persona_id: str, max_new_tokens: int):
    return engine.get("ChatSession")(workspace, run_id, persona_id, max_new_tokens=max_new_tokens)


class _Pane(QWidget):
    """One run's transcript; keeps that run's own replies in its history."""

    def __init__(self, title: str):
        super().__init__()
        self.title = QLabel(title)
        self.title.setStyleSheet("font-weight: bold;")
        self.text = QTextBrowser()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.text)
        self.history: list[Message] = []
        self.session = None
        self.key = None
        self.reply = ""

    def add(self, role: str, text: str) -> None:
        colour = "#1f4e79" if role == "user" else "#2e7d32"
        self.text.append(f"<p><b style='color:{colour}'>{role}</b>&nbsp; {html.escape(text)}</p>")

    def begin_reply(self) -> None:
        self.reply = ""
        self.text.append("<p><b style='color:#2e7d32'>assistant</b>&nbsp; </p>")

    def add_chunk(self, chunk: str) -> None:
        self.reply += chunk
        cursor = self.text.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(chunk)
        self.text.setTextCursor(cursor)


class ChatView(QWidget):
    """Replies stream token by token from a worker iterating ``ChatSession.stream_reply``."""

    reply_done = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.persona = QComboBox()
        self.persona.setMinimumWidth(130)
        self.run_a = QComboBox()
        self.run_b = QComboBox()
        for w in (self.run_a, self.run_b):
            w.setMinimumWidth(240)
        spec = {s.name: s for s in EvalParams.specs()}["max_new_tokens"]
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(int(spec.min or 1), int(spec.max or 4096))
        self.max_tokens.setValue(int(spec.default))
        self.max_tokens.setToolTip(spec.help)
        self.load_test = QPushButton("Load a test dialogue")
        self.load_test.setToolTip("Fill the history with the next test turn of this persona and show its reference")
        self.load_test.clicked.connect(self.load_test_turn)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this persona's model from the run: merged, GGUF for Ollama, PEFT")
        self.export_button.clicked.connect(self.export_model)
        top = QHBoxLayout()
        for text, w in (("Persona:", self.persona), ("Run:", self.run_a), ("Beside:", self.run_b),
                        ("Max tokens:", self.max_tokens)):
            top.addWidget(QLabel(text))
            top.addWidget(w)
        top.addWidget(self.load_test)
        top.addWidget(clear)
        top.addWidget(self.export_button)
        top.addStretch(1)
        self.pane_a = _Pane("Run")
        self.pane_b = _Pane("Beside")
        self.reference = QTextBrowser()
        self.reference.setPlaceholderText("The reference reply appears here when the history comes from "
                                          "the persona's test split.")
        ref = QWidget()
        rl = QVBoxLayout(ref)
        rl.setContentsMargins(0, 0, 0, 0)
        ref_title = QLabel("Reference (test split)")
        ref_title.setStyleSheet("font-weight: bold;")
        rl.addWidget(ref_title)
        rl.addWidget(self.reference)
        self.panes = QSplitter(Qt.Orientation.Horizontal)
        for w in (self.pane_a, self.pane_b, ref):
            self.panes.addWidget(w)
        self.panes.setSizes([500, 500, 320])
        self.input = QLineEdit()
        self.input.setPlaceholderText("Say something to the assistant, e.g. “turn on the lights in the kitchen”")
        self.input.returnPressed.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        self.status = QLabel()
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addWidget(self.send_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.panes, 1)
        lay.addLayout(bottom)
        lay.addWidget(self.status)
        self._busy = False
        self._queue: list[_Pane] = []
        self._test_index = 0
        self._worker = None
        session.dataset_changed.connect(self._fill_personas)
        session.runs_changed.connect(self._fill_runs)
        self.persona.currentIndexChanged.connect(lambda _i: (self._fill_runs(), self.clear()))
        self.run_a.currentIndexChanged.connect(lambda _i: self.clear())
        self.run_b.currentIndexChanged.connect(lambda _i: self.clear())
        self._fill_personas()

    # -- choosers ---------------------------------------------------------------------------

    def _fill_personas(self) -> None:
        self.persona.blockSignals(True)
        self.persona.clear()
        ds = self.session.dataset
        for pid in ds.persona_ids if ds is not None else []:
            self.persona.addItem(pid, pid)
            self.persona.setItemData(self.persona.count() - 1, ds.personas[pid].character,
                                     Qt.ItemDataRole.ToolTipRole)
        self.persona.blockSignals(False)
        self._fill_runs()

    def _fill_runs(self) -> None:
        pid = self.persona.currentData()
        runs = [r for r in self.session.store().list_runs(status="finished") if not r.personas or pid in r.personas]
        for combo, none_text in ((self.run_a, None), (self.run_b, "(none)")):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if none_text:
                combo.addItem(none_text, None)
            for r in runs:
                combo.addItem(f"{r.label} ({r.method})", r.id)
            i = combo.findData(current)
            combo.setCurrentIndex(max(i, 0))
            combo.blockSignals(False)
        self.pane_a.title.setText(f"Run: {self.run_a.currentText()}" if runs else "Run: no finished run yet")
        self.pane_b.title.setText(f"Beside: {self.run_b.currentText()}")
        self.pane_b.setVisible(self.run_b.currentData() is not None)

    def export_model(self):
        from shpers_gui.widgets.export_dialog import open_export_dialog

        return open_export_dialog(self, self.session, self.run_a.currentData(), self.persona.currentData())

    def set_selection(self, persona_id: str, run_id: str, beside: str | None = None) -> None:
        self.persona.setCurrentIndex(self.persona.findData(persona_id))
        self.run_a.setCurrentIndex(self.run_a.findData(run_id))
        self.run_b.setCurrentIndex(self.run_b.findData(beside))

    def choose_run(self, run_id: str) -> None:
        """Chat with ``run_id``: keep the persona if the run covers it, else take the run's first persona."""
        run = self.session.store().get_run(run_id)
        if run.personas and self.persona.currentData() not in run.personas:
            self.persona.setCurrentIndex(max(self.persona.findData(run.personas[0]), 0))
        self.run_a.setCurrentIndex(self.run_a.findData(run.id))

    def _active_panes(self) -> list[_Pane]:
        panes = [self.pane_a] if self.run_a.currentData() else []
        if self.run_b.currentData():
            panes.append(self.pane_b)
        return panes

    # -- conversation -----------------------------------------------------------------------

    def clear(self) -> None:
        for pane in (self.pane_a, self.pane_b):
            pane.history = []
            pane.text.clear()
        self.reference.clear()
        self.pane_a.title.setText(f"Run: {self.run_a.currentText()}")
        self.pane_b.title.setText(f"Beside: {self.run_b.currentText()}")
        self.pane_b.setVisible(self.run_b.currentData() is not None)

    def load_test_turn(self) -> None:
        """Put the next test turn's history in every pane, show its reference, and ask for replies."""
        pid = self.persona.currentData()
        split = self.session.splits().get(pid)
        turns = [(d, h, m) for d in (split.test if split else []) for h, m in d.turns()]
        if not turns or self._busy:
            self.status.setText("This persona has no test turns." if not turns else self.status.text())
            return
        dialogue, history, reference = turns[self._test_index % len(turns)]
        self._test_index += 1
        self.clear()
        for pane in self._active_panes():
            pane.history = list(history)
            for m in history:
                pane.add(m.role, m.text)
        self.reference.setHtml(
            f"<p style='color:#555'>{html.escape(dialogue.dialogue_id or '')} · turn "
            f"{len(history)}{' · persona-dependent ★' if reference.persona_dependent else ''}</p>"
            f"<p>{html.escape(reference.text)}</p>")
        self._start(self._active_panes())

    def send(self) -> None:
        text = self.input.text().strip()
        if not text or self._busy:
            return
        panes = self._active_panes()
        if not panes:
            self.status.setText("Pick a finished run first.")
            return
        self.input.clear()
        self.reference.clear()
        for pane in panes:
            pane.history.append(Message("user", text))
            pane.add("user", text)
        self._start(panes)

    def _start(self, panes: list[_Pane]) -> None:
        # One pane at a time: both runs share the loaded base model.
        self._queue = list(panes)
        self._busy = True
        self.send_button.setEnabled(False)
        self.load_test.setEnabled(False)
        self._next()

    def _next(self) -> None:
        if not self._queue:
            self._busy = False
            self.send_button.setEnabled(True)
            self.load_test.setEnabled(True)
            self.status.setText("")
            self.reply_done.emit()
            return
        pane = self._queue[0]
        run_id = (self.run_a if pane is self.pane_a else self.run_b).currentData()
        key = (run_id, self.persona.currentData(), self.max_tokens.value())
        if pane.key != key:
            self.status.setText(f"loading {run_id} for {key[1]}…")
            self._worker = run_call(open_chat, self.session.workspace, run_id, key[1], key[2],
                                    on_result=lambda s, p=pane, k=key: self._opened(p, k, s),
                                    on_error=self._failed)
            return
        self.status.setText("generating…")
        pane.begin_reply()
        self._worker = run_call(pane.session.stream_reply, list(pane.history), stream=True,
                                on_chunk=pane.add_chunk, on_result=lambda _r, p=pane: self._replied(p),
                                on_error=self._failed)

    def _opened(self, pane: _Pane, key, chat) -> None:
        pane.session, pane.key = chat, key
        self._next()

    def _replied(self, pane: _Pane) -> None:
        pane.history.append(Message("assistant", pane.reply.strip()))
        self._queue.pop(0)
        self._next()

    def _failed(self, message: str, _tb: str) -> None:
        self._queue = []
        self._next()
        self.status.setText(f"chat failed: {message}")

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.abort()

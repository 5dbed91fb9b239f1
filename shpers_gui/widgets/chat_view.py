"""The Chat tab: talk to a persona's adapter of a finished run, optionally two runs side by side.

The conversation is a list of "asks" (the messages put to the assistant before each reply: a
typed user message, or a test dialogue's history) and, per pane, that run's own replies. So a run
put in a pane later replays the asks, and both panes are answered in one mixed-adapter batch.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
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
from shpers_core.evaluation.config import EvalParams
from shpers_core.methods.registry import METHODS
from shpers_gui import engine
from shpers_gui.workers import run_call


def open_chat(workspace, run_id: str, persona_id: str, max_new_tokens: int):
    return engine.get("ChatSession")(workspace, run_id, persona_id, max_new_tokens=max_new_tokens)


def stream_together(sessions, histories):
    return engine.get("stream_together")(sessions, histories)


class _Pane(QWidget):
    """One run's transcript: the shared asks with this run's own replies."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.title = QLabel(role)
        self.title.setStyleSheet("font-weight: bold;")
        self.title.setWordWrap(True)
        self.source = QLabel()
        self.source.setWordWrap(True)
        self.source.setStyleSheet("color: #555;")
        self.text = QTextBrowser()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.source)
        lay.addWidget(self.text, 1)
        self.replies: list[str] = []
        self.notes: list[str] = []
        self._asks: list[list[Message]] = []
        self.session = None
        self.key = None
        self.reply = ""

    def history_for(self, asks: list[list[Message]], i: int) -> list[Message]:
        """What this run is asked at ask ``i``: earlier asks with its own earlier replies, then ask ``i``."""
        out: list[Message] = []
        for j in range(i):
            out += asks[j] + [Message("assistant", self.replies[j])]
        return out + list(asks[i])

    @property
    def history(self) -> list[Message]:
        """The whole conversation as this run sees it."""
        return [m for msgs, reply in zip(self._asks, self.replies) for m in (*msgs, Message("assistant", reply))]

    def render(self, asks: list[list[Message]]) -> None:
        self._asks = asks
        self.text.clear()
        for i, msgs in enumerate(asks):
            for m in msgs:
                self._add(m.role, m.text, given=m.role == "assistant")
            if i < len(self.replies):
                self._add("assistant", self.replies[i])
                if self.notes[i]:
                    self._note(self.notes[i])

    def _add(self, role: str, text: str, given: bool = False) -> None:
        colour = "#1f4e79" if role == "user" else "#2e7d32"
        label = f"{role} (from the test dialogue)" if given else role
        self.text.append(f"<p><b style='color:{colour}'>{html.escape(label)}</b>&nbsp; {html.escape(text)}</p>")

    def _note(self, text: str) -> None:
        self.text.append(f"<p style='color:#8d6e63'><i>{html.escape(text)}</i></p>")

    def begin_reply(self) -> None:
        self.reply = ""
        self.text.append("<p><b style='color:#2e7d32'>assistant</b>&nbsp; </p>")

    def add_chunk(self, chunk: str) -> None:
        self.reply += chunk
        cursor = self.text.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(chunk)
        self.text.setTextCursor(cursor)

    def end_reply(self, note: str) -> None:
        self.replies.append(self.reply.strip())
        self.notes.append(note)
        if note:
            self._note(note)


class ChatView(QWidget):
    """Replies stream token by token from a worker iterating ``stream_together``."""

    reply_done = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.persona = QComboBox()
        self.persona.setMinimumContentsLength(10)
        self.run_a = QComboBox()
        self.run_b = QComboBox()
        for w in (self.run_a, self.run_b):
            w.setMinimumContentsLength(16)
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        spec = {s.name: s for s in EvalParams.specs()}["max_new_tokens"]
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(int(spec.min or 1), int(spec.max or 4096))
        self.max_tokens.setValue(int(spec.default))
        self.max_tokens.setToolTip(spec.help)
        self.load_test = QPushButton("Load a test dialogue")
        self.load_test.setToolTip("Fill the history with the next test turn of this persona and show its reference")
        self.load_test.clicked.connect(self.load_test_turn)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End the reply now (Esc)")
        self.stop_button.setShortcut("Esc")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this persona's model from the run: merged, GGUF for Ollama, PEFT")
        self.export_button.clicked.connect(self.export_model)
        top = QGridLayout()
        for col, (text, w) in enumerate((("Persona:", self.persona), ("Run:", self.run_a), ("Beside:", self.run_b))):
            top.addWidget(QLabel(text), 0, 2 * col)
            top.addWidget(w, 0, 2 * col + 1)
        top.setColumnStretch(3, 1)
        top.setColumnStretch(5, 1)
        second = QHBoxLayout()
        second.addWidget(QLabel("Max tokens:"))
        second.addWidget(self.max_tokens)
        second.addWidget(self.load_test)
        second.addWidget(self.clear_button)
        second.addWidget(self.stop_button)
        second.addWidget(self.export_button)
        second.addStretch(1)
        top.addLayout(second, 1, 0, 1, 6)
        self.pane_a = _Pane("Run")
        self.pane_b = _Pane("Beside")
        self.reference = QTextBrowser()
        # Qt draws a text view's empty-state text on one line, cut off at this narrow pane's edge: a label wraps.
        self.reference_hint = QLabel("The reference reply appears here when the history comes from the "
                                     "persona's test split (Load a test dialogue).")
        self.reference_hint.setWordWrap(True)
        self.reference_hint.setStyleSheet("color: #777;")
        ref = QWidget()
        rl = QVBoxLayout(ref)
        rl.setContentsMargins(0, 0, 0, 0)
        ref_title = QLabel("Reference (test split)")
        ref_title.setStyleSheet("font-weight: bold;")
        rl.addWidget(ref_title)
        rl.addWidget(self.reference_hint)
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
        self.status.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addWidget(self.send_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.panes, 1)
        lay.addLayout(bottom)
        lay.addWidget(self.status)
        self.asks: list[list[Message]] = []
        self._busy = False
        self._steps: list[tuple[int, list[_Pane]]] = []
        self._current: list[_Pane] = []
        self._test_index = 0
        self._worker = None
        self._stopped = False
        # Callbacks of a call started before the last clear or run change carry an old number.
        self._gen = 0
        self._deferred: list | None = None
        session.dataset_changed.connect(self._fill_personas)
        session.runs_changed.connect(self._fill_runs)
        self.persona.currentIndexChanged.connect(lambda _i: (self._fill_runs(), self.clear()))
        self.run_a.currentIndexChanged.connect(lambda _i: self._run_changed(self.pane_a))
        self.run_b.currentIndexChanged.connect(lambda _i: self._run_changed(self.pane_b))
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
        finished = self.session.store().list_runs(status="finished")
        runs = [r for r in finished if not r.personas or pid in r.personas]
        if not finished:
            why = "No finished run yet: launch one, then chat with it here."
        elif not runs:
            why = (f"No finished run covers {pid}: the {len(finished)} finished run(s) were trained on other "
                   "personas. Pick another persona, or launch a run with this one checked.")
        else:
            why = ""
        for combo, none_text in ((self.run_a, None), (self.run_b, "(none)")):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if none_text:
                combo.addItem(none_text, None)
            elif why:
                combo.addItem("(no run for this persona)", None)
                combo.setItemData(0, why, Qt.ItemDataRole.ToolTipRole)
            for r in runs:
                combo.addItem(f"{r.label} ({r.method})", r.id)
                combo.setItemData(combo.count() - 1, f"{r.label}\n{r.method} on {r.base_model}\n{r.id}",
                                  Qt.ItemDataRole.ToolTipRole)
            combo.setCurrentIndex(max(combo.findData(current), 0))
            combo.blockSignals(False)
        self.why_empty = why
        self._update_headers()

    def _update_headers(self) -> None:
        pid = self.persona.currentData()
        store = self.session.store()
        for pane, combo in ((self.pane_a, self.run_a), (self.pane_b, self.run_b)):
            run_id = combo.currentData()
            if run_id is None:
                pane.title.setText(f"{pane.role}: {self.why_empty}" if pane is self.pane_a and self.why_empty
                                   else f"{pane.role}: none")
                pane.source.setText("")
                continue
            run = store.get_run(run_id)
            title = METHODS[run.method].title if run.method in METHODS else run.method
            score = store.persona_scores(run.id).get(pid)
            score_text = "" if score is None else f" · emb. sim. {score * 100:.1f} % on {pid}'s test turns"
            # A study row is named after its method ("Unified LoRA (1 of 3 epochs)"): say the method once.
            method = "" if run.label.startswith(title) else f" — {title}"
            pane.title.setText(f"{pane.role}: {run.label}{method}{score_text}")
            pane.title.setToolTip(f"run {run.id} ({run.method} on {run.base_model})")
            recipe = engine.get("run_recipes")(self.session.workspace, run.id).get(pid)
            pane.source.setText("answers with " + engine.get("describe_recipe")(recipe, run.id))
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

    def _run_for(self, pane: _Pane) -> str | None:
        return (self.run_a if pane is self.pane_a else self.run_b).currentData()

    # -- conversation -----------------------------------------------------------------------

    def _reset(self) -> None:
        """Stop whatever runs and forget its callbacks; the next call waits for it to end."""
        self.stop()
        self._gen += 1
        self._steps = []
        self._deferred = None
        if self._busy:
            self._finish()

    def clear(self) -> None:
        self._reset()
        self.asks = []
        for pane in (self.pane_a, self.pane_b):
            pane.replies, pane.notes = [], []
            pane.render(self.asks)
        self._show_reference("")
        self._update_headers()

    def _show_reference(self, text_html: str) -> None:
        """Show a test turn's reference, or (empty) the hint that says where one comes from."""
        self.reference.setHtml(text_html)
        self.reference_hint.setVisible(not text_html)

    def _run_changed(self, pane: _Pane) -> None:
        """Keep the conversation; the pane's new run answers every ask so far, one after the other."""
        self._reset()
        self._update_headers()
        # The other pane may have been stopped mid-way: drop its unanswered asks' partial state.
        n = len(self.asks)
        for p in (self.pane_a, self.pane_b):
            del p.replies[n:], p.notes[n:]
        pane.replies, pane.notes = [], []
        pane.render(self.asks)
        if self._run_for(pane) and self.asks:
            self._start([(i, [pane]) for i in range(n)])

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
        self.asks = [list(history)]
        for pane in (self.pane_a, self.pane_b):
            pane.render(self.asks)
        self._show_reference(
            f"<p style='color:#555'>{html.escape(dialogue.dialogue_id or '')} · turn "
            f"{len(history)}{' · persona-dependent ★' if reference.persona_dependent else ''}</p>"
            f"<p>{html.escape(reference.text)}</p>")
        panes = self._active_panes()
        if panes:
            self._start([(0, panes)])

    def send(self) -> None:
        text = self.input.text().strip()
        if not text or self._busy:
            return
        panes = self._active_panes()
        if not panes:
            self.status.setText(self.why_empty or "Pick a finished run first.")
            return
        self.input.clear()
        self._show_reference("")
        self.asks.append([Message("user", text)])
        for pane in (self.pane_a, self.pane_b):
            pane._asks = self.asks
            pane._add("user", text)
        self._start([(len(self.asks) - 1, panes)])

    def _start(self, steps: list[tuple[int, list[_Pane]]]) -> None:
        self._busy = True
        if self._worker is not None:  # a stopped call is still ending: the base model is not free yet
            self._deferred = list(steps)
            self.send_button.setEnabled(False)
            self.load_test.setEnabled(False)
            return
        self._steps = list(steps)
        self._stopped = False
        self.send_button.setEnabled(False)
        self.load_test.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._next()

    def _call(self, fn, *args, **kwargs):
        gen = self._gen

        def guard(callback):
            return lambda *a: callback(*a) if gen == self._gen else None
        for name in ("on_result", "on_error", "on_chunk"):
            if name in kwargs:
                kwargs[name] = guard(kwargs[name])
        worker = run_call(fn, *args, **kwargs)
        self._worker = worker
        worker.signals.done.connect(lambda w=worker: self._call_ended(w))
        return worker

    def _call_ended(self, worker) -> None:
        if worker is self._worker:
            self._worker = None
        if self._worker is None and self._deferred is not None:
            steps, self._deferred = self._deferred, None
            self._start(steps)

    def _finish(self) -> None:
        self._busy = False
        self._current = []
        self.send_button.setEnabled(True)
        self.load_test.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.reply_done.emit()

    def _next(self) -> None:
        if not self._steps:
            if not self._stopped:
                self.status.setText("")
            self._finish()
            return
        index, panes = self._steps[0]
        pid = self.persona.currentData()
        for pane in panes:
            key = (self._run_for(pane), pid, self.max_tokens.value())
            if pane.key != key:
                self.status.setText(f"loading {key[0]} for {pid}…")
                self._call(open_chat, self.session.workspace, key[0], pid, key[2],
                           on_result=lambda s, p=pane, k=key: self._opened(p, k, s), on_error=self._failed)
                return
        self._steps.pop(0)
        self._current = panes
        self.status.setText("generating…" if len(panes) == 1 else f"generating {len(panes)} replies in one batch…")
        for pane in panes:
            pane.begin_reply()
        self._done_rows: dict[int, bool] = {}
        self._call(stream_together, [p.session for p in panes], [p.history_for(self.asks, index) for p in panes],
                   stream=True, on_chunk=self._piece, on_result=lambda _r: self._replied(), on_error=self._failed)

    def _opened(self, pane: _Pane, key, chat) -> None:
        pane.session, pane.key = chat, key
        if self._stopped:
            self._finish()
            return
        # The next call starts once this one has fully ended (its done signal follows the result).
        self._worker = None
        self._next()

    def _piece(self, piece) -> None:
        pane = self._current[piece.row]
        if piece.text:
            pane.add_chunk(piece.text)
        if piece.done:
            self._done_rows[piece.row] = piece.truncated

    def _replied(self) -> None:
        limit = self.max_tokens.value()
        for row, pane in enumerate(self._current):
            if self._stopped and row not in self._done_rows:
                note = "(stopped)"
            elif self._done_rows.get(row):
                note = f"(cut off at the {limit}-token limit: raise Max tokens for a longer reply)"
            else:
                note = ""
            pane.end_reply(note)
        if self._stopped:
            self._steps = []
            self.status.setText("Stopped.")
        self._worker = None
        self._next()

    def _failed(self, message: str, _tb: str) -> None:
        self._steps = []
        self._finish()
        self.status.setText(f"chat failed: {message}")

    def stop(self) -> None:
        """End generation now: the reply so far stays, marked as stopped; queued replays are dropped."""
        if self._worker is not None:
            self._stopped = True
            self._steps = []
            self._worker.abort()

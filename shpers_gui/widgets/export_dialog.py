"""Export one persona's answer of a finished run: a merged model, a GGUF LoRA for llama.cpp/Ollama, or PEFT."""

from __future__ import annotations

import json

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from shpers_gui import engine
from shpers_gui.workers import run_call

FORMATS = (
    ("merged", "Merged model: a Hugging Face folder with the adapter folded into the weights"),
    ("gguf", "GGUF for llama.cpp / Ollama: the LoRA as a GGUF adapter, the base GGUF and a Modelfile"),
    ("peft", "PEFT folders: the adapter (and any soft prompt or KV prefix) as the tool stores them"),
)


def export_model(workspace, run_id: str, persona_id: str, fmt: str, out: str) -> str:
    """Run the export; returns its summary (what it contains and cannot carry)."""
    return engine.get("export_persona")(workspace, run_id, persona_id, fmt, out).summary()


class ExportDialog(QDialog):
    """Persona, format and folder for one run; the export runs on a worker."""

    exported = Signal(str)  # the summary

    def __init__(self, session, run_id: str, persona_id: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.run_id = run_id
        self.setWindowTitle(f"Export from run {run_id}")
        self.persona = QComboBox()
        plan = session.workspace.run_dir(run_id) / "plan.json"
        personas = sorted(json.loads(plan.read_text())) if plan.exists() else []
        for pid in personas:
            self.persona.addItem(pid, pid)
        if persona_id is not None and self.persona.findData(persona_id) >= 0:
            self.persona.setCurrentIndex(self.persona.findData(persona_id))
        self.format = QComboBox()
        for value, text in FORMATS:
            self.format.addItem(text, value)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a new or empty folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._pick_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Persona:", self.persona)
        form.addRow("Format:", self.format)
        form.addRow("Folder:", row)
        self.status = QLabel("" if personas else f"Run {run_id} has no exportable personas (is it finished?)")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setEnabled(bool(personas))
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.resize(680, 0)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export into", str(self.session.root))
        if path:
            self.folder.setText(path)

    def start(self) -> None:
        out = self.folder.text().strip()
        if not out:
            self.status.setText("Choose a folder to export into.")
            return
        self.export_button.setEnabled(False)
        self.status.setText("exporting…")
        run_call(export_model, self.session.workspace, self.run_id, self.persona.currentData(),
                 self.format.currentData(), out, on_result=self._done, on_error=self._failed)

    def _done(self, summary: str) -> None:
        # Kept open: the summary says what the export could not carry, which the user should read.
        self.status.setText(summary.replace("\n", "<br>"))
        self.export_button.setEnabled(True)
        self.exported.emit(summary)

    def _failed(self, message: str, _traceback: str) -> None:
        self.status.setText(f"<span style='color:#b00020'>{message}</span>")
        self.export_button.setEnabled(True)


def open_export_dialog(parent: QWidget, session, run_id: str | None, persona_id: str | None = None) -> ExportDialog | None:
    """Show the dialog for ``run_id`` (non-modal); None when no run is chosen."""
    if not run_id:
        return None
    dialog = ExportDialog(session, run_id, persona_id, parent)
    dialog.show()
    return dialog

"""File > Import: convert a dataset (EdgeWisePersona, chat layout, the study's own) into the workspace."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
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

FORMATS = (("guess from the files", ""), ("EdgeWisePersona (three JSONL files)", "edgewisepersona"),
           ("chat layout (messages: role, content)", "chat"), ("shpers (this tool's own)", "shpers"))


def import_into_workspace(workspace, source: str, fmt: str, persona_field: str, character_field: str,
                          strict: bool):
    """Convert ``source`` and make it the workspace's dataset; returns (ImportResult, Installed)."""
    result = engine.get("import_dataset")(source, fmt or None, persona_field=persona_field or None,
                                          character_field=character_field or None, strict=strict)
    return result, engine.get("install_dataset")(workspace, result.dataset)


class ImportDialog(QDialog):
    """Source, format and column names; the import runs on a worker and the dialog closes when it is done."""

    imported = Signal(str)  # the one-line summary

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Import dataset")
        self.source = QLineEdit()
        self.source.setPlaceholderText("a file, a folder, or a Hugging Face dataset id (org/name)")
        file_button, folder_button = QPushButton("File…"), QPushButton("Folder…")
        file_button.clicked.connect(self._pick_file)
        folder_button.clicked.connect(self._pick_folder)
        row = QHBoxLayout()
        row.addWidget(self.source, 1)
        row.addWidget(file_button)
        row.addWidget(folder_button)
        self.format = QComboBox()
        for text, value in FORMATS:
            self.format.addItem(text, value)
        self.persona_field = QLineEdit()
        self.persona_field.setPlaceholderText("e.g. user_id")
        self.persona_field.setToolTip("Chat layout: the column naming each conversation's user or persona")
        self.character_field = QLineEdit()
        self.character_field.setPlaceholderText("optional, e.g. profile")
        self.character_field.setToolTip("Chat layout: the column describing the persona")
        self.strict = QCheckBox("Refuse personas with fewer than 3 dialogues (otherwise they are skipped)")
        form = QFormLayout()
        form.addRow("Source:", row)
        form.addRow("Format:", self.format)
        form.addRow("Persona column:", self.persona_field)
        form.addRow("Description column:", self.character_field)
        form.addRow("", self.strict)
        self.status = QLabel("The current dataset is kept in the workspace's dataset archive.")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.format.currentIndexChanged.connect(lambda _i: self._fields_enabled())
        self._fields_enabled()
        self.resize(640, 0)

    def _fields_enabled(self) -> None:
        chat = self.format.currentData() in ("chat", "")
        self.persona_field.setEnabled(chat)
        self.character_field.setEnabled(chat)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Dataset file", str(self.session.root),
                                              "JSON lines or JSON (*.jsonl *.json);;All files (*)")
        if path:
            self.source.setText(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", str(self.session.root))
        if path:
            self.source.setText(path)

    def start(self) -> None:
        source = self.source.text().strip()
        if not source:
            self.status.setText("Give a file, a folder or a dataset id.")
            return
        self.import_button.setEnabled(False)
        self.status.setText(f"importing {source}…")
        run_call(import_into_workspace, self.session.workspace, source, self.format.currentData(),
                 self.persona_field.text().strip(), self.character_field.text().strip(), self.strict.isChecked(),
                 on_result=self._done, on_error=self._failed)

    def _done(self, outcome) -> None:
        result, installed = outcome
        self.session.set_dataset(result.dataset, installed.path)
        summary = f"imported {result.summary()}"
        if installed.previous is not None:
            summary += f"; the previous dataset is kept at {installed.previous}"
        self.status.setText(summary)
        self.imported.emit(summary)
        self.accept()

    def _failed(self, message: str, _traceback: str) -> None:
        # A dataset error is one line naming the file, line and field: show it as it is.
        self.status.setText(f"<span style='color:#b00020'>{message}</span>")
        self.import_button.setEnabled(True)

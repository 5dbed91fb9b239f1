"""The Results tab: every run in the store, sortable and filterable, with comparison and export."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from shpers_core.jobs.spec import defaults_for
from shpers_core.methods.registry import METHODS
from shpers_gui import engine
from shpers_gui.widgets.compare_view import CompareView
from shpers_gui.widgets.jobs_view import STATUS_COLOURS

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2


def changed_params(method: str, params: dict) -> str:
    """The parameters of a run that differ from the engine's defaults, as ``name=value``."""
    try:
        defaults = defaults_for(method)
    except Exception:  # noqa: BLE001 - a run of a method this build no longer has
        return ""
    out = []
    for group, values in defaults.items():
        for name, default in values.items():
            value = (params.get(group) or {}).get(name, default)
            if value != default:
                out.append(f"{name}={value}")
    return ", ".join(out)


def _pct(x):
    return "" if x is None else f"{x * 100:.1f}"


def _duration(s):
    if s is None:
        return ""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class RunsModel(QAbstractTableModel):
    """One row per run: the study table's numbers plus model, parameters and status."""

    COLUMNS = ["Name", "Method", "Model", "Score % (mean ± std)", "Device P", "Param F1", "Num. P",
               "Personas", "Parameters", "Trainable", "Train time", "Status", "Created", "Run"]

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.rows: list[tuple] = []

    def refresh(self) -> None:
        store = self.session.store()
        runs = {r.id: r for r in store.list_runs()}
        table = engine.get("study_rows")(store, list(runs)) if runs else []
        self.beginResetModel()
        self.rows = [(runs[t.run_id], t) for t in table]
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()):
        return len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def _values(self, run, t) -> list[tuple[str, object]]:
        """(display, sort key) per column."""
        title = METHODS[run.method].title if run.method in METHODS else run.method
        score = "" if t.mean is None else f"{t.mean * 100:.1f} ± {(t.std or 0) * 100:.1f}"
        return [
            (run.label, run.label.lower()), (title, title), (run.base_model, run.base_model),
            (score, -1.0 if t.mean is None else t.mean),
            (_pct(t.device_precision), t.device_precision or -1.0), (_pct(t.parameter_f1), t.parameter_f1 or -1.0),
            (_pct(t.numerical_precision), t.numerical_precision or -1.0),
            (str(len(run.personas)), len(run.personas)),
            (changed_params(run.method, run.params),) * 2,
            (f"{run.trainable_params:,}" if run.trainable_params else "", run.trainable_params or 0),
            (_duration(run.duration_s), run.duration_s or 0.0), (run.status, run.status),
            (run.created_at[:19].replace("T", " "), run.created_at), (run.id, run.id),
        ]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        run, t = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._values(run, t)[col][0]
        if role == SORT_ROLE:
            return self._values(run, t)[col][1]
        if role == RUN_ID_ROLE:
            return run.id
        if role == Qt.ItemDataRole.ForegroundRole and col == 11:
            return QColor(STATUS_COLOURS.get(run.status, "#555555"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 11 and run.error:
                return run.error
            if col == 8:
                return self._values(run, t)[8][0] or None
        if role == Qt.ItemDataRole.TextAlignmentRole and 3 <= col <= 10 and col != 8:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class RunsFilter(QSortFilterProxyModel):
    """Free text over every column, and optionally one status."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.status = ""
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortRole(SORT_ROLE)

    def set_status(self, status: str) -> None:
        self.status = status
        self.invalidateFilter()

    def filterAcceptsRow(self, row, parent):
        if self.status and self.sourceModel().rows[row][0].status != self.status:
            return False
        return super().filterAcceptsRow(row, parent)


class ResultsView(QWidget):
    """Runs table on top, the comparison of the selected runs below."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = RunsModel(session, self)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs (name, method, model, status, parameters)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.status_filter = QComboBox()
        self.status_filter.addItem("all statuses", "")
        for s in ("finished", "running", "failed", "cancelled", "interrupted"):
            self.status_filter.addItem(s, s)
        self.status_filter.currentIndexChanged.connect(
            lambda _i: self.proxy.set_status(self.status_filter.currentData()))
        self.table = QTableView()
        # Run names differ at their ends ("... prefix" vs "... prefix (KV)"): keep both ends visible.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(12, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, w in ((0, 190), (1, 150), (2, 150), (3, 170), (8, 180), (12, 140)):
            header.resizeSection(col, w)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.hint = QLabel("Select two or more finished runs to compare them.")

        buttons = QHBoxLayout()
        buttons.addWidget(self.filter, 1)
        buttons.addWidget(self.status_filter)
        for text, slot, tip in (
                ("Refresh", self.refresh, "Read the runs again from the store"),
                ("Export Markdown…", lambda: self.export("md"), "The visible rows as a Markdown table"),
                ("Export CSV…", lambda: self.export("csv"), "The visible rows as CSV"),
                ("Table 5.1", self.show_study_table, "The study's table over the finished runs"),
                ("Export model…", self.export_model, "A persona's model from the selected run: merged, GGUF, PEFT"),
                ("Delete run", self.delete_selected, "Delete the selected runs and their rows")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(buttons)
        tl.addWidget(self.table)
        tl.addWidget(self.hint)
        self.compare = CompareView(session)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.compare)
        split.setSizes([380, 480])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        session.runs_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_run_ids()
        self.model.refresh()
        self.select_runs(selected)

    def visible_run_ids(self) -> list[str]:
        return [self.proxy.index(r, 0).data(RUN_ID_ROLE) for r in range(self.proxy.rowCount())]

    def selected_run_ids(self) -> list[str]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [self.proxy.index(r, 0).data(RUN_ID_ROLE) for r in rows]

    def select_runs(self, run_ids: list[str]) -> None:
        sel = self.table.selectionModel()
        sel.clearSelection()
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data(RUN_ID_ROLE) in run_ids:
                sel.select(self.proxy.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def _selection_changed(self) -> None:
        ids = self.selected_run_ids()
        self.hint.setVisible(len(ids) < 2)
        self.compare.set_runs(ids)

    def export_model(self):
        from shpers_gui.widgets.export_dialog import open_export_dialog

        ids = self.selected_run_ids()
        return open_export_dialog(self, self.session, ids[0] if ids else None)

    def export(self, fmt: str, path: str | None = None) -> str:
        """Write the visible rows (in their shown order) as Markdown or CSV; returns the text."""
        rows = engine.get("study_rows")(self.session.store(), self.visible_run_ids()) if self.proxy.rowCount() else []
        text = engine.get("to_markdown" if fmt == "md" else "to_csv")(rows)
        if path is None:
            filt = "Markdown (*.md)" if fmt == "md" else "CSV (*.csv)"
            path, _ = QFileDialog.getSaveFileName(self, "Export runs", f"runs.{fmt}", filt)
            if not path:
                return text
        Path(path).write_text(text, encoding="utf-8")
        return text

    def study_table_text(self) -> str:
        store = self.session.store()
        ids = [r.id for r in store.list_runs(status="finished")]
        return engine.get("to_markdown")(engine.get("study_rows")(store, ids)) if ids else "No finished runs yet.\n"

    def show_study_table(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Table 5.1 — embedding similarity by method")
        text = QPlainTextEdit(self.study_table_text())
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        text.setStyleSheet("font-family: monospace;")
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = box.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(text.toPlainText()))
        box.rejected.connect(dialog.reject)
        lay = QVBoxLayout(dialog)
        lay.addWidget(text)
        lay.addWidget(box)
        dialog.resize(1100, 420)
        dialog.show()

    def delete_selected(self) -> None:
        ids = self.selected_run_ids()
        if not ids:
            return
        answer = QMessageBox.question(self, "Delete runs", f"Delete {len(ids)} run(s) and all their results?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        store = self.session.store()
        try:
            for rid in ids:
                store.delete_run(rid)
        except Exception as exc:  # noqa: BLE001 - StoreError for a running run, shown as is
            QMessageBox.warning(self, "Cannot delete", str(exc))
        self.session.runs_changed.emit()

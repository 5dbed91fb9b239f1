"""Table 5.1 as a sortable table: one row per finished run, grouped by base model and dataset."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from shpers_gui import engine
from shpers_gui.widgets.table_model import RowTableModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_COLOURS = {"better": "#2e7d32", "worse": "#c62828", "baseline": "#1f4e79"}
# Row fields sorted by number, in the order of the table's columns (None: sort by the shown text).
_SORT_FIELDS = [None, None, None, None, "mean", "diff_vs_unified", "p_holm", None, "min", "persona_dependent",
                "persona_dependent_diff", "persona_dependent_p_holm", "other", "other_diff", "other_p_holm",
                "device_precision", "parameter_f1", "numerical_precision", "trainable_params", "train_seconds", None]
# Model and dataset, then the verdict and the p-values are what a reader checks first.
_WIDTHS = {0: 160, 1: 170, 2: 190, 3: 120, 4: 185, 7: 140}


class StudyTableModel(RowTableModel):
    """The engine's :class:`TableRow` list; cells are the Markdown export's, sorting is numeric."""

    def __init__(self, rows=None, parent=None):
        super().__init__(lambda: len(self.rows), parent)
        self.headers = list(engine.get("HEADERS"))
        self.set_rows(rows or [])

    def set_rows(self, rows) -> None:
        rows = list(rows)
        groups: dict = {}

        def update() -> None:
            self.rows = rows
            self._cells = [engine.get("row_cells")(r) for r in rows]
            self._group = [groups.setdefault(r.group, len(groups)) for r in rows]

        self.reset_with(update)


    def columns(self) -> list[str]:
        return self.headers

    def column_tooltip(self, section: int) -> str | None:
        head = self.headers[section]
        if "p (Holm)" in head:
            return "Paired two-sided Wilcoxon against the group's unified LoRA run, Holm-corrected over the rows"
        if head == "Verdict":
            return "better / worse: corrected p < 0.05 and the sign of the difference; otherwise no difference shown"
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        row, col = index.row(), index.column()
        r = self.rows[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cells[row][col]
        if role == SORT_ROLE:
            field = _SORT_FIELDS[col]
            if field is None:
                return (self._group[row], self._cells[row][col]) if col < 2 else self._cells[row][col]
            value = getattr(r, field)
            return float("-inf") if value is None else float(value)
        if role == Qt.ItemDataRole.ForegroundRole and col == 7:
            return QColor(VERDICT_COLOURS.get(r.verdict, "#555555"))
        if role == Qt.ItemDataRole.BackgroundRole and self._group[row] % 2:
            return QColor("#f3f6fa")  # alternate groups, so where one ends is visible
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{r.run_name} ({r.method}) on {r.model}, dataset {r.dataset}\n"
                    f"baseline: {r.baseline_run_id or 'none in this group'}")
        if role == Qt.ItemDataRole.TextAlignmentRole and 4 <= col <= 19 and col != 7:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class _SortProxy(QSortFilterProxyModel):
    def lessThan(self, left, right):
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class StudyTableDialog(QDialog):
    """The table, sortable by any column, with Markdown and CSV export and a copy button."""

    def __init__(self, store, run_ids: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Table 5.1 — embedding similarity by method, per model and dataset")
        self.rows = engine.get("study_rows")(store, run_ids) if run_ids else []
        self.model = StudyTableModel(parent=self)
        self.model.set_rows(self.rows)
        self.proxy = _SortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.resizeColumnsToContents()
        for col, width in _WIDTHS.items():
            header.resizeSection(col, width if col in (4, 7) else min(width, header.sectionSize(col)))
        note = QLabel(
            "Rows are grouped by base model and dataset; each group is compared with its own unified LoRA run. "
            "p: paired two-sided Wilcoxon over the personas both runs scored, Holm-corrected over all compared "
            "rows; verdict at corrected p < 0.05. Click a column head to sort." if self.rows else
            "No finished runs yet.")
        note.setWordWrap(True)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        for text, slot in (("Copy as Markdown", self.copy), ("Export Markdown…", lambda: self.export("md")),
                           ("Export CSV…", lambda: self.export("csv"))):
            box.addButton(text, QDialogButtonBox.ButtonRole.ActionRole).clicked.connect(slot)
        box.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addWidget(note)
        lay.addWidget(box)
        self.resize(1000, 460)

    def markdown(self) -> str:
        return engine.get("to_markdown")(self.rows)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.markdown())

    def export(self, fmt: str, path: str | None = None) -> str:
        text = self.markdown() if fmt == "md" else engine.get("to_csv")(self.rows)
        return save_table_text(self, text, fmt, "Export Table 5.1", "table-5-1", path)


def save_table_text(parent: QWidget, text: str, fmt: str, title: str, stem: str, path: str | None = None) -> str:
    """Write a table's Markdown (``fmt`` "md") or CSV text to ``path``, asked for when None; returns the text."""
    if path is None:
        filt = "Markdown (*.md)" if fmt == "md" else "CSV (*.csv)"
        path, _ = QFileDialog.getSaveFileName(parent, title, f"{stem}.{fmt}", filt)
        if not path:
            return text
    Path(path).write_text(text, encoding="utf-8")
    return text

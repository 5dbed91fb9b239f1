"""Table 5.1 as a sortable table (one row per finished run, grouped by base model and dataset), as a
forest plot of the rows' differences from unified LoRA, and as the study's questions answered in words."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QTableView,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from shpers_gui import engine
from shpers_gui.widgets.forest_plot import ForestPlot
from shpers_gui.widgets.table_model import RowTableModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_COLOURS = {"better": "#2e7d32", "worse": "#c62828", "baseline": "#1f4e79"}
# Model and dataset, then the verdict and the p-values are what a reader checks first. Named columns
# are capped; the score and the verdict get a fixed width; every other column fits its contents.
_WIDTHS = {"Model": 160, "Dataset": 170, "Run": 260, "Method": 120}
_UNCUT = {"Emb. sim. % (mean ± std)": 185, "Verdict": 140}


class StudyTableModel(RowTableModel):
    """The engine's :class:`TableRow` list; cells are the Markdown export's, sorting is numeric."""

    def __init__(self, rows=None, parent=None):
        super().__init__(lambda: len(self.rows), parent)
        columns = engine.get("COLUMNS")
        self.headers = [header for header, _ in columns]
        # Row fields sorted by number (None: by the shown text).
        self.sort_fields = [field for _, field in columns]
        self.verdict_column = self.headers.index("Verdict")
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
        if head == "Seeds":
            return ("Training seeds of the row's runs; pooled runs show the standard deviation of their means, "
                    "in points")
        if "CI" in head:
            return ("The difference's interval in points; all rows' intervals hold together with 95 % confidence "
                    "(Student t at the Bonferroni level over the rows)")
        if head == "Verdict":
            return "better / worse: corrected p < 0.05 and the sign of the difference; otherwise no difference shown"
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        row, col = index.row(), index.column()
        r = self.rows[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cells[row][col]
        if role == SORT_ROLE:
            field = self.sort_fields[col]
            if field is None:
                return (self._group[row], self._cells[row][col]) if col < 2 else self._cells[row][col]
            value = getattr(r, field)
            return float("-inf") if value is None else float(value)
        if role == Qt.ItemDataRole.ForegroundRole and col == self.verdict_column:
            return QColor(VERDICT_COLOURS.get(r.verdict, "#555555"))
        if role == Qt.ItemDataRole.BackgroundRole and self._group[row] % 2:
            return QColor("#f3f6fa")  # alternate groups, so where one ends is visible
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{r.run_name} ({r.method}) on {r.model}, dataset {r.dataset}\n"
                    f"baseline: {r.baseline_run_id or 'none in this group'}")
        if role == Qt.ItemDataRole.TextAlignmentRole and self.sort_fields[col] is not None:
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
    """The table, sortable by any column, with Markdown and CSV export and a copy button, and its
    differences as a forest plot. ``settings`` (a QSettings) remembers the pooling and the plot's turns."""

    def __init__(self, store, run_ids: list[str], parent=None, *, settings=None):
        super().__init__(parent)
        self.setWindowTitle("Table 5.1 — embedding similarity by method, per model and dataset")
        self.store, self.run_ids, self.settings = store, list(run_ids), settings
        self.pool = QCheckBox("Pool runs that differ only in their training seed")
        self.pool.setToolTip("One row per recipe: each persona's score is its mean over the seeds. The Seeds "
                             "column gives the seeds and how far the runs' means moved between them.")
        self.pool.setChecked(self._setting("pool_seeds", "true") == "true")
        self.rows = self._rows()
        self.model = StudyTableModel(parent=self)
        self.model.set_rows(self.rows)
        self.forest = ForestPlot()
        subset = self._setting("forest_turns", "")
        if self.forest.subset.findText(subset) >= 0:
            self.forest.subset.setCurrentText(subset)
        self.forest.set_rows(self.rows)
        self.findings = QTextBrowser()
        self.findings.setHtml(findings_html(self.rows))
        self.proxy = _SortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        # Run names end alike ("..., 8 training dialogues a persona)"): what tells rows apart is their start.
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.resizeColumnsToContents()
        for col, head in enumerate(self.model.headers):
            if head in _WIDTHS:
                header.resizeSection(col, min(_WIDTHS[head], header.sectionSize(col)))
            elif head in _UNCUT:
                header.resizeSection(col, _UNCUT[head])
        note = QLabel(engine.get("table_note")() + " Click a column head to sort." if self.rows else
                      "No finished runs yet.")
        note.setWordWrap(True)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        for text, slot in (("Copy as Markdown", self.copy), ("Export Markdown…", lambda: self.export("md")),
                           ("Export CSV…", lambda: self.export("csv")), ("Export report…", self.export_report)):
            box.addButton(text, QDialogButtonBox.ButtonRole.ActionRole).clicked.connect(slot)
        box.rejected.connect(self.reject)
        self.pool.toggled.connect(self.reload)
        self.pool.toggled.connect(lambda on: self._remember("pool_seeds", "true" if on else "false"))
        self.forest.subset.currentTextChanged.connect(lambda text: self._remember("forest_turns", text))
        self.views = QTabWidget()
        self.views.addTab(self.table, "Table")
        self.views.addTab(self.forest, "Differences")
        self.views.setTabToolTip(1, "Each row's difference from unified LoRA with its simultaneous 95 % interval")
        self.views.addTab(self.findings, "Findings")
        self.views.setTabToolTip(2, "RQ1-RQ4 answered in words from this table's differences, intervals and verdicts")
        lay = QVBoxLayout(self)
        lay.addWidget(self.pool)
        lay.addWidget(self.views, 1)
        lay.addWidget(note)
        lay.addWidget(box)
        self.resize(1000, 520)

    def _setting(self, key: str, default: str) -> str:
        if self.settings is None:
            return default
        return str(self.settings.value(f"study_table/{key}", default))

    def _remember(self, key: str, value: str) -> None:
        if self.settings is not None:
            self.settings.setValue(f"study_table/{key}", value)

    def _rows(self) -> list:
        if not self.run_ids:
            return []
        return engine.get("study_rows")(self.store, self.run_ids, pool_seeds=self.pool.isChecked())

    def reload(self) -> None:
        """Rebuild the rows, pooled over seeds or not as the check box says."""
        self.rows = self._rows()
        self.model.set_rows(self.rows)
        self.forest.set_rows(self.rows)
        self.findings.setHtml(findings_html(self.rows))

    def markdown(self) -> str:
        return engine.get("to_markdown")(self.rows)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.markdown())

    def export(self, fmt: str, path: str | None = None) -> str:
        text = self.markdown() if fmt == "md" else engine.get("to_csv")(self.rows)
        return save_table_text(self, text, fmt, "Export Table 5.1", "table-5-1", path)

    def export_report(self, path: str | None = None) -> str:
        """The findings, the table and its forest plots in one Markdown file, as ``runs export --format report``."""
        return save_table_text(self, engine.get("report_markdown")(self.rows), "md", "Export the study report",
                               "table-5-1-report", path)


def findings_html(rows) -> str:
    """The engine's answers to RQ1-RQ4 (:mod:`shpers_core.evaluation.findings`): each question in bold with
    its answer, the rows behind it as a list."""
    found = engine.get("findings")(rows)
    if not found:
        return f"<p>{html.escape(engine.get('NOTHING_TO_ANSWER'))}</p>"
    out = [f"<p style='color:#555'>{html.escape(engine.get('HEADING'))}</p>"]
    for group in found:
        if len(found) > 1:
            out.append(f"<h3>{html.escape(group.where)}</h3>")
        for f in group.answers:
            out.append(f"<p><b>{html.escape(f.label)}, {html.escape(f.question)}</b><br>{html.escape(f.answer)}</p><ul>"
                       + "".join(f"<li>{html.escape(line)}</li>" for line in f.rows) + "</ul>")
        out.append(f"<p><b>{html.escape(group.overall)}</b></p>")
    return "".join(out)


def save_table_text(parent: QWidget, text: str, fmt: str, title: str, stem: str, path: str | None = None) -> str:
    """Write a table's Markdown (``fmt`` "md") or CSV text to ``path``, asked for when None; returns the text."""
    if path is None:
        filt = "Markdown (*.md)" if fmt == "md" else "CSV (*.csv)"
        path, _ = QFileDialog.getSaveFileName(parent, title, f"{stem}.{fmt}", filt)
        if not path:
            return text
    Path(path).write_text(text, encoding="utf-8")
    return text

"""Two runs side by side: per-persona scores as a paired scatter or bars, and paired statistics."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from shpers_core.evaluation.metrics import METRIC_LABELS, METRIC_NAMES
from shpers_gui import engine
from shpers_gui.widgets.plot_export import add_export_button


def _short(text: str, n: int = 30) -> str:
    """Axis labels stay inside a small plot; the full names are in the statistics above it."""
    return text if len(text) <= n else text[: n - 1] + "…"


SUBSETS = {"all": "all turns", "persona_dependent": "persona-dependent turns (★)", "other": "other turns"}
WARNING_STYLE = "background: #fff3cd; color: #664d03; border: 1px solid #e0c36a; padding: 4px;"


class CompareView(QWidget):
    """Compares run A and run B, both chosen among the runs given to :meth:`set_runs`.

    The user's choice of A and B is kept while the list of runs changes, as long as both stay in it.
    """

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.run_a = QComboBox()
        self.run_b = QComboBox()
        self.subset = QComboBox()
        for key, text in SUBSETS.items():
            self.subset.addItem(text, key)
        self.subset.setToolTip("Which test turns the scores are averaged over (as `runs compare --subset`)")
        self.metric = QComboBox()
        for name in METRIC_NAMES:
            self.metric.addItem(METRIC_LABELS.get(name, name), name)
        self.metric.setToolTip("The per-persona score compared (as `runs compare --metric`)")
        self.mode = QComboBox()
        self.mode.addItems(["paired scatter", "bars"])
        for w in (self.run_a, self.run_b):
            w.setMinimumContentsLength(18)
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_a.activated.connect(lambda _i: self._chosen())
        self.run_b.activated.connect(lambda _i: self._chosen())
        for w in (self.subset, self.metric, self.mode):
            w.currentIndexChanged.connect(lambda _i: self.update_view())
        self._choice: tuple[str | None, str | None] = (None, None)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.hide()
        self.stats = QLabel("Select two or more runs in the table above.")
        self.stats.setWordWrap(True)
        self.stats.setTextFormat(Qt.TextFormat.RichText)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats.setStyleSheet("font-size: 11pt; padding: 4px;")
        top = QGridLayout()
        for col, (text, w) in enumerate((("Run A:", self.run_a), ("Run B:", self.run_b))):
            top.addWidget(QLabel(text), 0, 2 * col)
            top.addWidget(w, 0, 2 * col + 1)
        for col, (text, w) in enumerate((("Turns:", self.subset), ("Metric:", self.metric), ("Show:", self.mode))):
            top.addWidget(QLabel(text), 1, 2 * col)
            top.addWidget(w, 1, 2 * col + 1)
        top.setColumnStretch(1, 1)
        top.setColumnStretch(3, 1)
        self.plot = pg.PlotWidget(background="w")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.plot, 1)
        add_export_button(pl, self.plot, "comparison")
        self.differences = QTableWidget(0, 6)
        self.differences.setHorizontalHeaderLabels(["Persona", "A", "B", "B − A", "A answered by", "B answered by"])
        self.differences.verticalHeader().hide()
        self.differences.setWordWrap(False)
        header = self.differences.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in ((0, 90), (1, 55), (2, 55), (3, 60), (4, 160), (5, 160)):
            header.resizeSection(col, width)
        self.differences.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("Where they differ most"))
        rl.addWidget(self.differences)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(plot_box)
        split.addWidget(right)
        split.setSizes([600, 460])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.warning)
        lay.addWidget(self.stats)
        lay.addWidget(split, 1)
        self.result = None

    def _chosen(self) -> None:
        self._choice = (self.run_a.currentData(), self.run_b.currentData())
        self.update_view()

    def set_runs(self, run_ids: list[str]) -> None:
        store = self.session.store()
        runs = [store.get_run(r) for r in run_ids]
        ids = [r.id for r in runs]
        want_a, want_b = self._choice
        if want_a not in ids:
            want_a = ids[0] if ids else None
        if want_b not in ids or want_b == want_a:
            want_b = next((i for i in ids if i != want_a), None)
        for combo, want in ((self.run_a, want_a), (self.run_b, want_b)):
            combo.blockSignals(True)
            combo.clear()
            for r in runs:
                combo.addItem(f"{r.label} ({r.method})", r.id)
                combo.setItemData(combo.count() - 1, f"{r.label}\n{r.method} on {r.base_model}\n{r.id}",
                                  Qt.ItemDataRole.ToolTipRole)
            combo.setCurrentIndex(max(combo.findData(want), 0) if want else -1)
            combo.blockSignals(False)
        self._choice = (self.run_a.currentData(), self.run_b.currentData())
        self.update_view()

    def choose(self, run_a: str, run_b: str) -> None:
        """Make ``run_a`` A and ``run_b`` B, as picking them in the boxes does."""
        self.run_a.setCurrentIndex(self.run_a.findData(run_a))
        self.run_b.setCurrentIndex(self.run_b.findData(run_b))
        self._chosen()

    def _show_warning(self, ra, rb) -> None:
        lines = engine.get("unlike_settings")(ra, rb)
        self.warning.setVisible(bool(lines))
        if lines:
            self.warning.setText("⚠ Unlike runs (A vs B) — " + "; ".join(lines)
                                 + ". The difference mixes this change with the method's.")

    def update_view(self) -> None:
        self.plot.clear()
        self.differences.setRowCount(0)
        self.result = None
        a_id, b_id = self.run_a.currentData(), self.run_b.currentData()
        if not a_id or not b_id or self.run_a.count() < 2:
            self.warning.hide()
            self.stats.setText("Select two or more runs in the table above.")
            return
        store = self.session.store()
        ra, rb = store.get_run(a_id), store.get_run(b_id)
        self._show_warning(ra, rb)
        metric, subset = self.metric.currentData(), self.subset.currentData()
        a = store.persona_scores(a_id, metric, subset=subset)
        b = store.persona_scores(b_id, metric, subset=subset)
        common = sorted(set(a) & set(b))
        name_a, name_b = html.escape(self.run_a.currentText()), html.escape(self.run_b.currentText())
        if a_id == b_id:
            self.stats.setText("A and B are the same run: pick two different runs.")
            return
        if not common:
            self.stats.setText("These runs share no scored personas on these turns (both must be finished and "
                               "cover the same personas).")
            return
        try:
            result = engine.get("paired_comparison")({p: a[p] for p in common}, {p: b[p] for p in common})
        except Exception as exc:  # noqa: BLE001 - StatsError and friends: say why instead of a plot
            self.stats.setText(f"No statistics: {html.escape(str(exc))}")
            return
        self.result = result
        what = f"{self.metric.currentText()}, {SUBSETS[subset]}"
        self.stats.setText(
            f"<b>{html.escape(result.summary('A', 'B'))}</b> · {html.escape(what)}<br>"
            f"A = {name_a}: mean {result.mean_a:.3f} · B = {name_b}: mean {result.mean_b:.3f}<br>"
            f"{html.escape(result.verdict('A', 'B'))}")
        xa = np.array([a[p] for p in common])
        xb = np.array([b[p] for p in common])
        if self.mode.currentIndex() == 0:
            self._scatter(common, xa, xb)
        else:
            self._bars(common, xa, xb)
        sources_a = engine.get("score_sources")(self.session.workspace, a_id)
        sources_b = engine.get("score_sources")(self.session.workspace, b_id)
        for pid, d in result.largest_differences(10):
            row = self.differences.rowCount()
            self.differences.insertRow(row)
            src_a = f"{ra.label}: {sources_a.get(pid, 'no plan recorded')}"
            src_b = f"{rb.label}: {sources_b.get(pid, 'no plan recorded')}"
            for col, text in enumerate((pid, f"{a[pid]:.3f}", f"{b[pid]:.3f}", f"{d:+.3f}",
                                        sources_a.get(pid, "–"), sources_b.get(pid, "–"))):
                item = QTableWidgetItem(text)
                item.setToolTip(f"A = {src_a}\nB = {src_b}")
                if col == 3:
                    item.setForeground(pg.mkColor("#2e7d32" if d > 0 else "#c62828" if d < 0 else "#555"))
                self.differences.setItem(row, col, item)

    def _scatter(self, ids, xa, xb) -> None:
        lo = float(min(xa.min(), xb.min()))
        hi = float(max(xa.max(), xb.max()))
        pad = max(0.02, (hi - lo) * 0.05)
        self.plot.plot([lo - pad, hi + pad], [lo - pad, hi + pad], pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        colours = [pg.mkBrush("#2e7d32" if y > x else "#c62828" if y < x else "#777") for x, y in zip(xa, xb)]
        spots = pg.ScatterPlotItem(x=xa, y=xb, brush=colours, size=10, pen=pg.mkPen("w", width=0.5),
                                   data=ids, hoverable=True, tip=lambda x, y, data: f"{data}\nA {x:.3f}\nB {y:.3f}")
        self.plot.addItem(spots)
        self.plot.setLabel("bottom", f"A: {_short(self.run_a.currentText())}")
        self.plot.setLabel("left", f"B: {_short(self.run_b.currentText())}")
        self.plot.getAxis("bottom").setTicks(None)
        # The same range on both axes puts y = x corner to corner whatever the pane's shape; a locked
        # aspect on a wide pane spread the x-axis far past the scores (-1 to 2 around 0.1-0.35).
        self.plot.setAspectLocked(False)
        self.plot.setXRange(lo - pad, hi + pad, padding=0)
        self.plot.setYRange(lo - pad, hi + pad, padding=0)

    def _bars(self, ids, xa, xb) -> None:
        self.plot.setAspectLocked(False)
        x = np.arange(len(ids))
        self.plot.addItem(pg.BarGraphItem(x=x - 0.2, height=xa, width=0.4, brush="#5c8fc9", name="A"))
        self.plot.addItem(pg.BarGraphItem(x=x + 0.2, height=xb, width=0.4, brush="#e39b4a", name="B"))
        step = max(1, len(ids) // 25)
        self.plot.getAxis("bottom").setTicks([[(i, ids[i]) for i in range(0, len(ids), step)]])
        self.plot.setLabel("bottom", "persona (blue A, orange B)")
        self.plot.setLabel("left", self.metric.currentText())

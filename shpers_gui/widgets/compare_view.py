"""Two runs side by side: per-persona scores as a paired scatter or bars, and paired statistics."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from shpers_gui import engine

METRIC = "embedding_similarity"


class CompareView(QWidget):
    """Compares run A and run B, both chosen among the runs given to :meth:`set_runs`."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.run_a = QComboBox()
        self.run_b = QComboBox()
        self.mode = QComboBox()
        self.mode.addItems(["paired scatter", "bars"])
        for w in (self.run_a, self.run_b, self.mode):
            w.currentIndexChanged.connect(lambda _i: self.update_view())
            w.setMinimumWidth(160)
        self.stats = QLabel("Select two or more runs in the table above.")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats.setStyleSheet("font-size: 11pt; padding: 4px;")
        top = QHBoxLayout()
        for text, w in (("Run A:", self.run_a), ("Run B:", self.run_b), ("Show:", self.mode)):
            top.addWidget(QLabel(text))
            top.addWidget(w)
        top.addStretch(1)
        self.plot = pg.PlotWidget(background="w")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.differences = QTableWidget(0, 4)
        self.differences.setHorizontalHeaderLabels(["Persona", "A", "B", "B − A"])
        self.differences.verticalHeader().hide()
        self.differences.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.differences.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("Where they differ most"))
        rl.addWidget(self.differences)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(right)
        split.setSizes([700, 360])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.stats)
        lay.addWidget(split, 1)
        self.result = None

    def set_runs(self, run_ids: list[str]) -> None:
        store = self.session.store()
        runs = [store.get_run(r) for r in run_ids]
        for combo, default in ((self.run_a, 0), (self.run_b, 1)):
            combo.blockSignals(True)
            combo.clear()
            for r in runs:
                combo.addItem(f"{r.label} ({r.method})", r.id)
            combo.setCurrentIndex(min(default, len(runs) - 1))
            combo.blockSignals(False)
        self.update_view()

    def update_view(self) -> None:
        self.plot.clear()
        self.differences.setRowCount(0)
        self.result = None
        a_id, b_id = self.run_a.currentData(), self.run_b.currentData()
        if not a_id or not b_id or self.run_a.count() < 2:
            self.stats.setText("Select two or more runs in the table above.")
            return
        store = self.session.store()
        a, b = store.persona_scores(a_id, METRIC), store.persona_scores(b_id, METRIC)
        common = sorted(set(a) & set(b))
        name_a, name_b = self.run_a.currentText(), self.run_b.currentText()
        if not common:
            self.stats.setText("These runs share no scored personas (both must be finished and cover the same personas).")
            return
        try:
            result = engine.get("paired_comparison")({p: a[p] for p in common}, {p: b[p] for p in common})
        except Exception as exc:  # noqa: BLE001 - StatsError and friends: say why instead of a plot
            self.stats.setText(f"No statistics: {exc}")
            return
        self.result = result
        self.stats.setText(
            f"<b>{result.summary('A', 'B')}</b><br>"
            f"A = {name_a}: mean {result.mean_a:.3f} · B = {name_b}: mean {result.mean_b:.3f}<br>"
            f"{result.verdict('A', 'B')}")
        xa = np.array([a[p] for p in common])
        xb = np.array([b[p] for p in common])
        if self.mode.currentIndex() == 0:
            self._scatter(common, xa, xb)
        else:
            self._bars(common, xa, xb)
        for pid, d in result.largest_differences(10):
            row = self.differences.rowCount()
            self.differences.insertRow(row)
            for col, text in enumerate((pid, f"{a[pid]:.3f}", f"{b[pid]:.3f}", f"{d:+.3f}")):
                item = QTableWidgetItem(text)
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
        self.plot.setLabel("bottom", f"A: {self.run_a.currentText()}")
        self.plot.setLabel("left", f"B: {self.run_b.currentText()}")
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.setAspectLocked(True)

    def _bars(self, ids, xa, xb) -> None:
        self.plot.setAspectLocked(False)
        x = np.arange(len(ids))
        self.plot.addItem(pg.BarGraphItem(x=x - 0.2, height=xa, width=0.4, brush="#5c8fc9", name="A"))
        self.plot.addItem(pg.BarGraphItem(x=x + 0.2, height=xb, width=0.4, brush="#e39b4a", name="B"))
        step = max(1, len(ids) // 25)
        self.plot.getAxis("bottom").setTicks([[(i, ids[i]) for i in range(0, len(ids), step)]])
        self.plot.setLabel("bottom", "persona (blue A, orange B)")
        self.plot.setLabel("left", "embedding similarity")

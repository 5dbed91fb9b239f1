"""Table 5.1's differences from unified LoRA drawn as a forest plot: one interval per row, zero marked.

The rows, their intervals and verdicts come from :mod:`shpers_core.evaluation.forest`, as the CLI's
text plot does.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from shpers_gui import engine
from shpers_gui.widgets.plot_export import add_export_button

# Menu text -> the engine's subset of turns (shpers_core.evaluation.forest.DIFFERENCE_FIELDS).
SUBSETS = {"All turns": "all", "Persona-dependent turns": "persona_dependent", "Other turns": "other"}
VERDICT_COLOURS = {"better": "#2e7d32", "worse": "#c62828"}
NEUTRAL = "#555555"


class ForestPlot(QWidget):
    """Each compared row's difference from its group's unified run, with its simultaneous interval."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []
        self.subset = QComboBox()
        self.subset.addItems(list(SUBSETS))
        self.subset.setToolTip("Which turns the differences are over")
        self.subset.currentIndexChanged.connect(self.redraw)
        self.plot = pg.PlotWidget(background="w")
        self.plot.showGrid(x=True, y=False, alpha=0.25)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setLabel("bottom", "difference from unified LoRA, points (simultaneous 95 % interval)")
        self.plot.getAxis("left").setStyle(tickLength=0)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setTextPen("#222222")  # pyqtgraph's grey is faint on white
        self.empty = QLabel("No row has a unified LoRA run to be compared with.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        top = QHBoxLayout()
        top.addWidget(QLabel("Turns:"))
        top.addWidget(self.subset)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.empty)
        add_export_button(lay, self.plot, "table-5-1-differences")
        # Drawn items, top row first: the engine's ForestRow (label, difference, low, high, verdict), in points.
        self.drawn: list = []

    def set_rows(self, rows) -> None:
        """Draw ``rows`` (the engine's TableRow list, in the table's order)."""
        self.rows = list(rows)
        self.redraw()

    def redraw(self) -> None:
        # Each row's verdict is its subset's own (that subset's corrected p), as its colour shows.
        self.drawn = engine.get("forest_rows")(self.rows, SUBSETS[self.subset.currentText()])
        self.plot.clear()
        self.plot.addItem(pg.InfiniteLine(0, angle=90, pen=pg.mkPen("#1f4e79", width=1.5)))
        self.empty.setVisible(not self.drawn)
        if not self.drawn:
            self.plot.getAxis("left").setTicks([[]])
            return
        n = len(self.drawn)
        ys = [n - 1 - i for i in range(n)]  # the table's first row on top
        for y, (_, _, low, high, verdict) in zip(ys, self.drawn):
            colour = VERDICT_COLOURS.get(verdict, NEUTRAL)
            self.plot.plot([low, high], [y, y], pen=pg.mkPen(colour, width=2.5), antialias=True)
        spots = pg.ScatterPlotItem(
            x=[d[1] for d in self.drawn], y=ys, size=9, pen=pg.mkPen("w", width=0.5),
            brush=[pg.mkBrush(VERDICT_COLOURS.get(d[4], NEUTRAL)) for d in self.drawn],
            data=[f"{d[0]}\n{d[1]:+.2f} points [{d[2]:+.2f}, {d[3]:+.2f}], {d[4]}" for d in self.drawn],
            hoverable=True, tip="{data}".format)
        self.plot.addItem(spots)
        self.plot.getAxis("left").setTicks([[(y, engine.get("short_label")(d[0])) for y, d in zip(ys, self.drawn)]])
        lo = min(min(d[2] for d in self.drawn), 0.0)
        hi = max(max(d[3] for d in self.drawn), 0.0)
        pad = 0.05 * (hi - lo or 1.0)
        self.plot.setXRange(lo - pad, hi + pad, padding=0)
        self.plot.setYRange(-0.7, n - 0.3, padding=0)

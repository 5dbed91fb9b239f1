"""Table 5.1's differences from unified LoRA as a forest plot: one interval per row, zero marked.

Reading 17 intervals as numbers is slow; drawn on one axis, which rows overlap zero and which lie
far below it shows at a glance. The values are the table's own (simultaneous 95 % intervals).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from shpers_gui.widgets.plot_export import add_export_button

# (menu text, TableRow fields of the difference and its interval)
SUBSETS = {
    "All turns": ("diff_vs_unified", "ci_low", "ci_high"),
    "Persona-dependent turns": ("persona_dependent_diff", "persona_dependent_ci_low", "persona_dependent_ci_high"),
    "Other turns": ("other_diff", "other_ci_low", "other_ci_high"),
}
VERDICT_COLOURS = {"better": "#2e7d32", "worse": "#c62828"}
NEUTRAL = "#555555"
LABEL_CHARS = 46  # run names end alike; their start tells rows apart


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


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
        # Drawn items, top row first: (label, difference, low, high, verdict), in points.
        self.drawn: list[tuple[str, float, float, float, str]] = []

    def set_rows(self, rows) -> None:
        """Draw ``rows`` (the engine's TableRow list, in the table's order)."""
        self.rows = list(rows)
        self.redraw()

    def redraw(self) -> None:
        diff_f, low_f, high_f = SUBSETS[self.subset.currentText()]
        several_groups = len({r.group for r in self.rows}) > 1
        self.drawn = []
        for r in self.rows:
            diff, low, high = getattr(r, diff_f), getattr(r, low_f), getattr(r, high_f)
            if r.is_baseline or diff is None or low is None or high is None:
                continue
            name = f"{r.model}: {r.run_name}" if several_groups else r.run_name
            self.drawn.append((name, diff * 100, low * 100, high * 100, r.verdict))  # points, as the table
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
        self.plot.getAxis("left").setTicks([[(y, _label(d[0])) for y, d in zip(ys, self.drawn)]])
        lo = min(min(d[2] for d in self.drawn), 0.0)
        hi = max(max(d[3] for d in self.drawn), 0.0)
        pad = 0.05 * (hi - lo or 1.0)
        self.plot.setXRange(lo - pad, hi + pad, padding=0)
        self.plot.setYRange(-0.7, n - 0.3, padding=0)

"""Training and validation loss curves of several runs at once, redrawn from a timer."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 80


class _Series:
    """A growing (step, value) buffer and the one plot item that shows it."""

    def __init__(self, item: pg.PlotDataItem):
        self.item = item
        self.x = np.empty(64)
        self.y = np.empty(64)
        self.n = 0
        self.dirty = False

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1
        self.dirty = True

    def replace(self, xs, ys) -> None:
        self.x = np.asarray(xs, dtype=float).copy()
        self.y = np.asarray(ys, dtype=float).copy()
        self.n = len(self.x)
        self.dirty = True


class LossPlot(QWidget):
    """Curves keyed by ``(run, series, kind)``; points are buffered, drawn every ~80 ms.

    Each run gets one colour and one legend entry; training curves are solid lines, validation
    curves dashed with markers (the plot's title says so). With several series per run (a
    multi-adapter run's personas) they share the run's colour and entry.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.setTitle("solid: training loss · dashed with dots: validation loss", color="#444", size="9pt")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        # A legend drawn straight on the curves hides them: give it a light, mostly opaque box.
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor="k",
                                          brush=pg.mkBrush(255, 255, 255, 215), pen=pg.mkPen("#bbb"))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self.series: dict[tuple[str, str, str], _Series] = {}
        self._colours: dict[str, int] = {}
        self._labels: dict[str, str] = {}
        self._in_legend: dict[str, pg.PlotDataItem] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def set_label(self, run: str, label: str) -> None:
        if self._labels.get(run) == label:
            return
        self._labels[run] = label
        item = self._in_legend.get(run)
        if item is not None:  # renamed while shown: one entry, the new name
            self.legend.removeItem(item)
            self.legend.addItem(item, label)

    def legend_labels(self) -> list[str]:
        return [label.text for _sample, label in self.legend.items]

    def runs(self) -> list[str]:
        return list(self._colours)

    def _get(self, run: str, series: str, kind: str) -> _Series:
        key = (run, series, kind)
        s = self.series.get(key)
        if s is None:
            index = self._colours.setdefault(run, len(self._colours))
            colour = pg.intColor(index, hues=9, values=1, maxValue=200)
            if kind == "val":
                pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine)
                item = pg.PlotDataItem(pen=pen, symbol="o", symbolSize=6, symbolBrush=colour, symbolPen=None)
            else:
                item = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5))
            self.plot.addItem(item)
            if run not in self._in_legend:
                self._in_legend[run] = item
                self.legend.addItem(item, self._labels.get(run, run))
            s = self.series[key] = _Series(item)
        return s

    def add_point(self, run: str, series: str, kind: str, step: float, value: float) -> None:
        """Buffer one point; it is drawn at the next timer tick."""
        self._get(run, series, kind).append(step, value)

    def set_curve(self, run: str, series: str, kind: str, steps, values) -> None:
        self._get(run, series, kind).replace(steps, values)

    def remove_run(self, run: str) -> None:
        for key in [k for k in self.series if k[0] == run]:
            item = self.series.pop(key).item
            self.legend.removeItem(item)
            self.plot.removeItem(item)
        self._in_legend.pop(run, None)
        self._colours.pop(run, None)

    def clear(self) -> None:
        for run in list(self._colours):
            self.remove_run(run)

    def point_count(self, run: str | None = None) -> int:
        return sum(s.n for k, s in self.series.items() if run is None or k[0] == run)

    def redraw(self) -> None:
        for s in self.series.values():
            if s.dirty:
                s.item.setData(s.x[: s.n], s.y[: s.n])
                s.dirty = False

"""A score against one parameter over the selected runs (a sweep's curve), with the final validation loss.

The points, their intervals, the reference and the verdicts come from
:mod:`shpers_core.evaluation.parameter_effect`, as ``shpers runs effect`` prints them.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
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
from shpers_gui.widgets.compare_view import SUBSETS
from shpers_gui.widgets.forest_plot import NEUTRAL, VERDICT_COLOURS
from shpers_gui.widgets.plot_export import add_export_button
from shpers_gui.widgets.study_table import save_table_text

REFERENCE_COLOUR = "#1f4e79"


class ParameterEffectDialog(QDialog):
    """``run_ids``' scores against the parameter chosen among those they differ in; for one run, that run and
    the finished runs that differ from it in one setting alone (its sweep), by setting."""

    def __init__(self, store, run_ids: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Score against a parameter")
        self.store = store
        self.effect = None
        self.defaults = engine.get("flat_defaults")(store.get_run(run_ids[0]).method) if run_ids else {}
        self.single = len(run_ids) == 1
        if self.single:
            self.choices = engine.get("sibling_groups")(store, run_ids[0])
        else:
            varied = engine.get("varied_settings")([store.get_run(r) for r in run_ids])
            # The seed last: a sweep of anything else pools over it.
            self.choices = {key: list(run_ids) for key in sorted(varied, key=lambda k: k == "train.seed")}
        self.parameter_box = QComboBox()
        for key, ids in self.choices.items():
            self.parameter_box.addItem(f"{key} ({len(ids)} runs)" if self.single else key, key)
        self.parameter_box.setToolTip("The settings these runs differ in; the curve needs the runs at one value to "
                                      "differ in nothing else but the seed")
        self.metric_box = QComboBox()
        for name in METRIC_NAMES:
            self.metric_box.addItem(METRIC_LABELS.get(name, name), name)
        self.subset_box = QComboBox()
        for key, text in SUBSETS.items():
            self.subset_box.addItem(text, key)
        for w in (self.parameter_box, self.metric_box, self.subset_box):
            w.currentIndexChanged.connect(lambda _i: self.update_view())
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setStyleSheet("font-size: 11pt; padding: 4px;")
        self.score_plot = self._plot()
        self.loss_plot = self._plot()
        self.loss_plot.setLabel("left", "final validation loss")
        self.loss_plot.setXLink(self.score_plot)
        plots = QWidget()
        pl = QVBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.score_plot, 3)
        pl.addWidget(self.loss_plot, 2)
        add_export_button(pl, self.score_plot, "score-against-parameter")
        self.table = QTableWidget(0, len(engine.get("EFFECT_HEADERS")))
        self.table.setHorizontalHeaderLabels(list(engine.get("EFFECT_HEADERS")))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        # A sweep's run names share their start and differ at their end ("... learning_rate=0.001").
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(plots)
        split.addWidget(self.table)
        split.setSizes([420, 160])
        top = QGridLayout()
        for col, (text, w) in enumerate((("Parameter:", self.parameter_box), ("Metric:", self.metric_box),
                                         ("Turns:", self.subset_box))):
            top.addWidget(QLabel(text), 0, 2 * col)
            top.addWidget(w, 0, 2 * col + 1)
            top.setColumnStretch(2 * col + 1, 1)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        for text, slot in (("Copy as Markdown", self.copy), ("Export CSV…", lambda: self.export_csv())):
            box.addButton(text, QDialogButtonBox.ButtonRole.ActionRole).clicked.connect(slot)
        box.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addWidget(split, 1)
        lay.addWidget(box)
        self.resize(900, 700)
        self.update_view()

    @staticmethod
    def _plot() -> pg.PlotWidget:
        plot = pg.PlotWidget(background="w")
        plot.showGrid(x=True, y=True, alpha=0.25)
        for side in ("left", "bottom"):
            plot.getAxis(side).setTextPen("#222222")
            plot.getAxis(side).enableAutoSIPrefix(False)
        return plot

    def update_view(self) -> None:
        for plot in (self.score_plot, self.loss_plot):
            plot.clear()
        self.table.setRowCount(0)
        self.effect = None
        if self.parameter_box.count() == 0:
            self.summary.setText("No finished run of this method differs from this one in one setting alone: "
                                 "sweep around it first (right-click ▸ Run again with changes…, then Sweep on the "
                                 "Launch tab)." if self.single else
                                 "These runs share every setting: there is nothing to plot them against. "
                                 "Compare two of them in the Results tab's panel instead.")
            return
        key = self.parameter_box.currentData()
        try:
            self.effect = engine.get("parameter_effect")(
                self.store, self.choices[key], key, metric=self.metric_box.currentData(),
                subset=self.subset_box.currentData(), defaults=self.defaults)
        except Exception as exc:  # noqa: BLE001 - EffectError and StoreError: say why instead of a plot
            self.summary.setText(html.escape(str(exc)))
            return
        lines = engine.get("effect_summary")(self.effect).splitlines()
        self.summary.setText("<br>".join(html.escape(line) for line in lines))
        self._fill_table()
        self._draw()

    def _positions(self) -> tuple[list[float], bool]:
        """Where each point sits on the x axis, and whether that axis is a number line (log10 when the
        values span a factor of 10 or more, as learning rates do)."""
        values = [p.value for p in self.effect.points]
        if self.effect.numeric:
            log = all(v > 0 for v in values) and max(values) >= 10 * min(values)
            return [math.log10(v) if log else float(v) for v in values], log
        return [float(i) for i in range(len(values))], False

    def _draw(self) -> None:
        effect = self.effect
        xs, log = self._positions()
        fmt = engine.get("format_value")
        scored = [(x, p) for x, p in zip(xs, effect.points) if p.mean is not None]
        if scored:
            sx = [x for x, _ in scored]
            means = [p.mean * 100 for _, p in scored]
            if effect.numeric:  # a line only where the values lie on a number line
                self.score_plot.plot(sx, means, pen=pg.mkPen("#999999", width=1.5))
            with_interval = [(x, p) for x, p in scored if p.interval is not None]
            if with_interval:
                self.score_plot.addItem(pg.ErrorBarItem(  # pyqtgraph does arithmetic on these: arrays
                    x=np.array([x for x, _ in with_interval]), y=np.array([p.mean * 100 for _, p in with_interval]),
                    top=np.array([(p.interval[1] - p.mean) * 100 for _, p in with_interval]),
                    bottom=np.array([(p.mean - p.interval[0]) * 100 for _, p in with_interval]),
                    beam=0.04 * (max(xs) - min(xs) or 1.0), pen=pg.mkPen("#555555", width=1.5)))
            colours = [REFERENCE_COLOUR if p.is_reference else VERDICT_COLOURS.get(p.verdict, NEUTRAL)
                       for _, p in scored]
            self.score_plot.addItem(pg.ScatterPlotItem(
                x=sx, y=means, size=11, pen=pg.mkPen("w", width=0.5), brush=[pg.mkBrush(c) for c in colours],
                symbol=["s" if p.is_reference else "o" for _, p in scored],
                data=[self._tip(p) for _, p in scored], hoverable=True, tip="{data}".format))
        losses = [(x, p.val_loss) for x, p in zip(xs, effect.points) if p.val_loss is not None]
        self.loss_plot.setVisible(bool(losses))  # merges and prompts train nothing: no loss to show
        if losses:
            self.loss_plot.plot([x for x, _ in losses], [v for _, v in losses], pen=pg.mkPen("#c77c2e", width=1.5)
                                if effect.numeric and len(losses) > 1 else None,
                                symbol="o", symbolBrush="#c77c2e", symbolPen="w", symbolSize=8)
        ticks = [[(x, fmt(p.value)) for x, p in zip(xs, effect.points)]]
        for plot in (self.score_plot, self.loss_plot):
            plot.getAxis("bottom").setTicks(ticks)
            plot.setLabel("bottom", effect.parameter + (" (log scale)" if log else ""))
        self.score_plot.setLabel("left", f"{self.metric_box.currentText()} %")
        self.score_plot.setToolTip("Mean over personas with its 95 % interval; the square is the reference, "
                                   "green above it, red below it (Holm p < 0.05)")
        pad = 0.08 * (max(xs) - min(xs) or 1.0)
        self.score_plot.setXRange(min(xs) - pad, max(xs) + pad, padding=0)

    def _tip(self, point) -> str:
        fmt = engine.get("format_value")
        head = f"{self.effect.parameter} = {fmt(point.value)}\n" + "\n".join(point.run_names)
        score = f"\n{point.mean * 100:.2f} % over {point.n_personas} personas"
        if point.is_reference:
            return head + score + f"\nthe reference ({self.effect.reference_reason})"
        if point.diff is None:
            return head + score
        return head + score + f"\n{point.diff * 100:+.2f} points against the reference: {point.verdict}"

    def _fill_table(self) -> None:
        for point in self.effect.points:
            row = self.table.rowCount()
            self.table.insertRow(row)
            for col, text in enumerate(engine.get("point_cells")(point)):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setToolTip("\n".join(f"{n} ({i})" for n, i in zip(point.run_names, point.run_ids)))
                if col == len(engine.get("EFFECT_HEADERS")) - 1:
                    item.setForeground(pg.mkColor(VERDICT_COLOURS.get(point.verdict, NEUTRAL)))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().resizeSection(1, min(260, self.table.horizontalHeader().sectionSize(1)))

    def copy(self) -> None:
        if self.effect is not None:
            QGuiApplication.clipboard().setText(engine.get("effect_markdown")(self.effect))

    def export_csv(self, path: str | None = None) -> str:
        """The points as ``shpers runs effect --format csv`` writes them; returns the text."""
        if self.effect is None:
            return ""
        return save_table_text(self, engine.get("effect_csv")(self.effect), "csv", "Export the curve",
                               "score-against-parameter", path)

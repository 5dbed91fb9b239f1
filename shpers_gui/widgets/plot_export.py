"""Saving a plot as PNG or SVG (pyqtgraph's exporters), from a button beside it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QMessageBox, QPushButton


def export_plot(plot_widget, path: str | Path) -> Path:
    """Write ``plot_widget``'s plot to ``path``: SVG when it ends in .svg, otherwise PNG."""
    import pyqtgraph.exporters as exporters

    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        path = path.with_suffix(".png")
    item = plot_widget.getPlotItem()
    exporter = exporters.SVGExporter(item) if path.suffix.lower() == ".svg" else exporters.ImageExporter(item)
    if path.suffix.lower() == ".png":
        # Twice the on-screen size, so the file stays sharp in a paper or slide.
        exporter.parameters()["width"] = max(800, int(item.sceneBoundingRect().width() * 2))
    exporter.export(str(path))
    return path


def add_export_button(layout, plot_widget, default_name: str) -> QPushButton:
    """An "Export plot…" button under ``plot_widget``, right-aligned in ``layout``."""
    button = QPushButton("Export plot…")
    button.setToolTip("Save this plot as PNG or SVG")

    def ask() -> None:
        path, chosen = QFileDialog.getSaveFileName(button, "Export plot", f"{default_name}.png",
                                                   "PNG image (*.png);;SVG vector image (*.svg)")
        if not path:
            return
        if not Path(path).suffix:
            path += ".svg" if "svg" in chosen.lower() else ".png"
        try:
            export_plot(plot_widget, path)
        except Exception as exc:  # noqa: BLE001 - a write error: say so, keep the app running
            QMessageBox.warning(button, "Cannot export the plot", f"{path}\n\n{exc}")

    button.clicked.connect(ask)
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(button)
    layout.addLayout(row)
    return button

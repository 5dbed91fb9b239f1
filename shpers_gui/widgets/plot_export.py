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
    if path.suffix.lower() == ".svg":
        _export_svg(plot_widget, path)
        return path
    item = plot_widget.getPlotItem()
    exporter = exporters.ImageExporter(item)
    # Twice the on-screen size, so the file stays sharp in a paper or slide.
    exporter.parameters()["width"] = max(800, int(item.sceneBoundingRect().width() * 2))
    exporter.export(str(path))
    return path


def _export_svg(plot_widget, path: Path) -> None:
    """Qt's own SVG painter over the plot's scene.

    pyqtgraph 0.14's SVGExporter fails on the closed paths Qt 6 writes ("Z"; pyqtgraph issue
    #3495), so the scene is painted into a :class:`QSvgGenerator` instead; lines stay vectors.
    """
    from PySide6.QtCore import QRectF, QSize
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    rect = plot_widget.sceneRect() if hasattr(plot_widget, "sceneRect") else plot_widget.rect()
    size = QSize(max(1, int(rect.width())), max(1, int(rect.height())))
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(size)
    generator.setViewBox(QRectF(0, 0, size.width(), size.height()))
    generator.setTitle(path.stem)
    painter = QPainter(generator)
    try:
        plot_widget.scene().render(painter, QRectF(0, 0, size.width(), size.height()), QRectF(rect))
    finally:
        painter.end()
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(f"nothing was written to {path}")


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

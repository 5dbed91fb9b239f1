"""The base of the app's read-only tables (Jobs, Personas, Results, Grid): rows under column titles.

A subclass passes a function that counts its rows, gives its column titles (``COLUMNS`` or
:meth:`columns` when they change) and what a cell shows (``data``); headers, counts and resets
are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt


class RowTableModel(QAbstractTableModel):
    COLUMNS: list[str] = []

    def __init__(self, row_count: Callable[[], int], parent=None):
        super().__init__(parent)
        self._row_count = row_count

    def columns(self) -> list[str]:
        return self.COLUMNS

    def column_tooltip(self, section: int) -> str | None:
        return None

    def row_header(self, section: int) -> str | None:
        """A row's title in the vertical header (None: none)."""
        return None

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else self._row_count()

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.columns())

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Vertical:
            return self.row_header(section) if role == Qt.ItemDataRole.DisplayRole else None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns()[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.column_tooltip(section)
        return None

    def reset_with(self, update: Callable[[], None]) -> None:
        """Run ``update`` (which replaces the rows) between Qt's begin/end reset, so views re-read everything."""
        self.beginResetModel()
        try:
            update()
        finally:
            self.endResetModel()

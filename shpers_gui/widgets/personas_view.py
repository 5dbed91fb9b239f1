"""The Personas tab: a searchable list, the selected persona's dialogues by split, the persona map."""

from __future__ import annotations

import html

from PySide6.QtCore import QItemSelectionModel, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from shpers_gui.widgets.meta_text import dialogue_meta_text, meta_html
from shpers_gui.widgets.persona_map import PersonaMap
from shpers_gui.widgets.table_model import RowTableModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1


class PersonasModel(RowTableModel):
    COLUMNS = ["Persona", "Archetype", "Cluster", "Dialogues", "Character"]

    def __init__(self, session, parent=None):
        super().__init__(lambda: len(self.ids), parent)
        self.session = session
        self.ids: list[str] = []
        session.dataset_changed.connect(self.refresh)
        session.clusters_changed.connect(self._clusters_changed)
        self.refresh()

    def refresh(self) -> None:
        ds = self.session.dataset
        self.reset_with(lambda: setattr(self, "ids", ds.persona_ids if ds is not None else []))

    def _clusters_changed(self) -> None:
        if self.ids:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.ids) - 1, 2))


    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        pid = self.ids[index.row()]
        p = self.session.dataset.personas[pid]
        col = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == 0:
                return pid
            if col == 1:
                return p.archetype or (p.dialogues[0].archetype if p.dialogues else "")
            if col == 2:
                c = self.session.clusters.get(pid)
                return ("" if c is None else c) if role == SORT_ROLE or c is None else f"cluster {c}"
            if col == 3:
                return len(p.dialogues)
            if col == 4:
                return p.character
        if role == Qt.ItemDataRole.ToolTipRole and col == 4:
            return p.character
        return None


class PersonasView(QWidget):
    """List, details and map, with selection kept in step between list and map."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = PersonasModel(session, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search personas (id, archetype, character)…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        for col, width in ((0, 100), (1, 110), (2, 70), (3, 75)):
            header.resizeSection(col, width)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.details = QTextBrowser()
        self.details.setPlaceholderText("Select a persona to see its dialogues by split")
        self.count = QLabel()

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.search)
        ll.addWidget(self.table)
        ll.addWidget(self.count)
        left_split = QSplitter(Qt.Orientation.Vertical)
        left_split.addWidget(left)
        left_split.addWidget(self.details)
        left_split.setSizes([420, 380])
        self.map = PersonaMap(session)
        self.map.persona_clicked.connect(self.select_persona)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_split)
        split.addWidget(self.map)
        split.setSizes([780, 620])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        session.dataset_changed.connect(self._dataset_changed)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.search.textChanged.connect(lambda _t: self._update_count())
        self.search.textChanged.connect(lambda _t: self._filter_map())
        self.notice = QLabel()
        self.notice.setStyleSheet("color: #8d6e63;")
        self.notice.setWordWrap(True)
        self.notice.hide()
        ll.addWidget(self.notice)
        self._dataset_changed()

    def _dataset_changed(self) -> None:
        self.details.clear()
        self._update_count()
        self.map.recompute()

    def _update_count(self) -> None:
        total = self.model.rowCount()
        shown = self.proxy.rowCount()
        self.count.setText(f"{shown} of {total} personas" if shown != total else f"{total} personas")

    def selected_ids(self) -> list[str]:
        rows = self.table.selectionModel().selectedRows()
        return [self.proxy.index(r.row(), 0).data() for r in sorted(rows, key=lambda i: i.row())]

    def _filter_map(self) -> None:
        """The map dims the personas the search hides."""
        if not self.search.text():
            self.map.set_visible(None)
        else:
            self.map.set_visible([self.proxy.index(r, 0).data() for r in range(self.proxy.rowCount())])
        self.notice.hide()

    def select_persona(self, pid: str) -> None:
        if pid not in self.model.ids:
            return
        if self.proxy.mapFromSource(self.model.index(self.model.ids.index(pid), 0)).row() < 0:
            text = self.search.text()
            self.search.clear()  # the search hides it
            self.notice.setText(f"{pid} was hidden by the search “{text}”: the search was cleared to show it.")
            self.notice.show()
        row = self.proxy.mapFromSource(self.model.index(self.model.ids.index(pid), 0)).row()
        self.table.selectionModel().select(
            self.proxy.index(row, 0),
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(self.proxy.index(row, 0))

    def _selection_changed(self) -> None:
        ids = self.selected_ids()
        self.map.highlight(ids)
        self.session.select_personas(ids)
        self.details.setHtml(self.persona_html(ids[0]) if ids else "")

    def persona_html(self, pid: str) -> str:
        ds = self.session.dataset
        p = ds.personas[pid]
        split = self.session.splits().get(pid)
        out = [f"<h3>{html.escape(pid)}</h3><p>{html.escape(p.character)}</p>", meta_html(p.meta)]
        parts = [("train", split.train), ("validation", split.val), ("test", split.test)] if split else [
            ("all", p.dialogues)]
        for name, dialogues in parts:
            out.append(f"<h4>{name} · {len(dialogues)} dialogues</h4>")
            for d in dialogues:
                head = " · ".join(x for x in (d.dialogue_id, d.domain, dialogue_meta_text(d.meta)) if x)
                out.append(f"<p style='margin-bottom:2px'><b>{html.escape(head)}</b></p><table>")
                for m in d.messages:
                    colour = "#1f4e79" if m.role == "user" else "#2e7d32"
                    mark = " ★" if m.persona_dependent else ""
                    out.append(f"<tr><td style='color:{colour};padding-right:6px' valign='top'>{m.role}{mark}</td>"
                               f"<td>{html.escape(m.text)}</td></tr>")
                out.append("</table>")
        return "".join(out)

"""The Results tab: every run in the store, sortable and filterable, with comparison and export."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from shpers_core.jobs.spec import defaults_for
from shpers_core.methods.registry import METHODS
from shpers_core.store import RESUMABLE_STATUSES, RUNNING, TERMINAL_STATUSES
from shpers_gui import engine
from shpers_gui.widgets.compare_view import CompareView
from shpers_gui.widgets.jobs_view import STATUS_COLOURS
from shpers_gui.widgets.parameter_effect_view import ParameterEffectDialog
from shpers_gui.widgets.study_table import StudyTableDialog, save_table_text
from shpers_gui.widgets.table_model import RowTableModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2


def changed_params(method: str, params: dict) -> str:
    """The parameters of a run that differ from the engine's defaults, as ``name=value``."""
    try:
        defaults = defaults_for(method)
    except Exception:  # noqa: BLE001 - a run of a method this build no longer has
        return ""
    out = []
    for group, values in defaults.items():
        for name, default in values.items():
            value = (params.get(group) or {}).get(name, default)
            if value != default:
                out.append(f"{name}={value}")
    return ", ".join(out)


def _pct(x):
    return "" if x is None else f"{x * 100:.1f}"


def _duration(s):
    if s is None:
        return ""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class RunsModel(RowTableModel):
    """One row per run: the study table's numbers plus model, parameters and status."""

    COLUMNS = ["Name", "Method", "Model", "Dataset", "Score % (mean ± std)", "Device P", "Param F1", "Num. P",
               "Personas", "Parameters", "Trainable", "Train time", "Status", "Created", "Tags", "Model dtype", "Run"]
    NAME, SCORE, PARAMS, STATUS, CREATED, TAGS = 0, 4, 9, 12, 13, 14

    def __init__(self, session, parent=None):
        super().__init__(lambda: len(self.rows), parent)
        self.session = session
        self.rows: list[tuple] = []
        self.labels: dict[str, str] = {}

    def refresh(self) -> None:
        store = self.session.store()
        runs = {r.id: r for r in store.list_runs()}
        self.labels = {rid: r.label for rid, r in runs.items()}
        table = engine.get("study_rows")(store, list(runs)) if runs else []
        self.reset_with(lambda: setattr(self, "rows", [(runs[t.run_id], t) for t in table]))


    def _values(self, run, t) -> list[tuple[str, object]]:
        """(display, sort key) per column."""
        title = METHODS[run.method].title if run.method in METHODS else run.method
        score = "" if t.mean is None else f"{t.mean * 100:.1f} ± {(t.std or 0) * 100:.1f}"
        tags = ", ".join(run.tags)
        # The dtype the run held its base model in (recorded when it loaded it); empty for a run still queued.
        dtype = run.params.get("dtype") or ""
        return [
            (run.label, run.label.lower()), (title, title), (run.base_model, run.base_model),
            (t.dataset, t.dataset), (score, -1.0 if t.mean is None else t.mean),
            (_pct(t.device_precision), t.device_precision or -1.0), (_pct(t.parameter_f1), t.parameter_f1 or -1.0),
            (_pct(t.numerical_precision), t.numerical_precision or -1.0),
            (str(len(run.personas)), len(run.personas)),
            (self._settings(run),) * 2,
            (f"{run.trainable_params:,}" if run.trainable_params else "", run.trainable_params or 0),
            (_duration(run.duration_s), run.duration_s or 0.0), (run.status, run.status),
            (run.created_at[:19].replace("T", " "), run.created_at), (tags, tags), (dtype, dtype), (run.id, run.id),
        ]

    def _settings(self, run) -> str:
        """What differs from the defaults, and the run a merge or prefix built on."""
        changed = changed_params(run.method, run.params)
        if not run.parent_run_id:
            return changed
        built = f"built on {self.labels.get(run.parent_run_id, run.parent_run_id)}"
        return f"{changed}, {built}" if changed else built

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        run, t = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._values(run, t)[col][0]
        if role == SORT_ROLE:
            return self._values(run, t)[col][1]
        if role == RUN_ID_ROLE:
            return run.id
        if role == Qt.ItemDataRole.ForegroundRole and col == self.STATUS:
            return QColor(STATUS_COLOURS.get(run.status, "#555555"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.STATUS and run.error:
                return run.error
            if col == self.PARAMS:
                return self._values(run, t)[self.PARAMS][0] or None
            if col == self.NAME:
                made = f"\nmade with {run.code_version}" if run.code_version else ""
                return f"{run.label}\n{run.id}{made}" + (f"\n\n{run.notes}" if run.notes else "")
            if col == 3:
                return run.dataset_path or None
        if role == Qt.ItemDataRole.TextAlignmentRole and self.SCORE <= col <= 11 and col != self.PARAMS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class RunsFilter(QSortFilterProxyModel):
    """Free text over every column, and optionally one status and one tag."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.status = ""
        self.tag = ""
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortRole(SORT_ROLE)

    def set_status(self, status: str) -> None:
        self.beginFilterChange()
        self.status = status
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_tag(self, tag: str) -> None:
        self.beginFilterChange()
        self.tag = tag
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row, parent):
        run = self.sourceModel().rows[row][0]
        if self.status and run.status != self.status:
            return False
        if self.tag and self.tag not in run.tags:
            return False
        return super().filterAcceptsRow(row, parent)


class RunDetailsDialog(QDialog):
    """Name, notes and tags of one run."""

    def __init__(self, run, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Run {run.id}")
        self.name = QLineEdit(run.name)
        self.tags = QLineEdit(", ".join(run.tags))
        self.tags.setPlaceholderText("comma-separated, e.g. baseline, keep")
        self.notes = QPlainTextEdit(run.notes)
        self.notes.setPlaceholderText("What this run was for, what you noticed")
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Tags", self.tags)
        form.addRow("Notes", self.notes)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        form.addRow(box)
        self.resize(460, 300)

    def values(self) -> tuple[str, list[str], str]:
        return (self.name.text().strip(), [t.strip() for t in self.tags.text().split(",") if t.strip()],
                self.notes.toPlainText().strip())


class ResultsView(QWidget):
    """Runs table on top, the comparison of the selected runs below."""

    open_curves = Signal(str)  # run id: show its stored curves in the Jobs tab
    chat_with = Signal(str)  # run id: pick it in the Chat tab
    resume_requested = Signal(str)  # run id: continue it from its checkpoint in the Jobs tab
    launch_like = Signal(str)  # run id: its settings into the Launch tab, to change one and queue it

    def __init__(self, session, parent=None, *, settings=None):
        super().__init__(parent)
        self.session = session
        self.settings = settings  # a QSettings: what Table 5.1 was last shown with
        self.model = RunsModel(session, self)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs (name, method, model, status, parameters)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.status_filter = QComboBox()
        self.status_filter.addItem("all statuses", "")
        for s in (RUNNING, *TERMINAL_STATUSES):
            self.status_filter.addItem(s, s)
        self.status_filter.currentIndexChanged.connect(
            lambda _i: self.proxy.set_status(self.status_filter.currentData()))
        self.tag_filter = QComboBox()
        self.tag_filter.setToolTip("Only runs with this tag (tags: right-click a run ▸ Notes and tags…)")
        self.tag_filter.currentIndexChanged.connect(lambda _i: self.proxy.set_tag(self.tag_filter.currentData() or ""))
        self.table = QTableView()
        # Names start with the row and end with its cuts ("Unified + learned persona prefix (KV, random
        # init) (1 of 10 epochs, ...)"): the start tells runs apart, so cut at the right.
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(RunsModel.CREATED, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # The name column is the widest: a study row says its cuts after the method ("... (KV) (1 of 10 epochs, ...)").
        for col, w in ((0, 330), (1, 150), (2, 130), (3, 150), (4, 165), (9, 180), (13, 140)):
            header.resizeSection(col, w)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda index: self.open_curves.emit(index.data(RUN_ID_ROLE)))
        self.hint = QLabel("Select two or more finished runs to compare them. Double-click a run for its curves; "
                           "right-click to rename, tag or chat.")
        self.hint.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.filter, 1)
        buttons.addWidget(self.status_filter)
        buttons.addWidget(self.tag_filter)
        actions = QHBoxLayout()
        for text, slot, tip in (
                ("Refresh", self.refresh, "Read the runs again from the store"),
                ("Export Markdown…", lambda: self.export("md"), "The visible rows as a Markdown table"),
                ("Export CSV…", lambda: self.export("csv"), "The visible rows as CSV"),
                ("Table 5.1", self.show_study_table, "The study's table over the finished runs"),
                ("Against a parameter…", lambda: self.show_parameter_effect(),
                 "The selected runs' scores against the one parameter they differ in (a sweep's curve), each "
                 "value paired with the default's; one selected run brings its sweep's other runs"),
                ("Export model…", self.export_model, "A persona's model from the selected run: merged, GGUF, PEFT"),
                ("Delete run", self.delete_selected, "Delete the selected runs and their rows")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            actions.addWidget(b)
        actions.addStretch(1)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(buttons)
        tl.addLayout(actions)
        tl.addWidget(self.table)
        tl.addWidget(self.hint)
        self.compare = CompareView(session)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.compare)
        split.setSizes([380, 480])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        session.runs_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_run_ids()
        self.model.refresh()
        self._fill_tags()
        self.select_runs(selected)

    def _fill_tags(self) -> None:
        current = self.tag_filter.currentData()
        tags = sorted({t for run, _ in self.model.rows for t in run.tags})
        self.tag_filter.blockSignals(True)
        self.tag_filter.clear()
        self.tag_filter.addItem("all tags", "")
        for t in tags:
            self.tag_filter.addItem(t, t)
        self.tag_filter.setCurrentIndex(max(self.tag_filter.findData(current), 0))
        self.tag_filter.blockSignals(False)
        self.proxy.set_tag(self.tag_filter.currentData() or "")

    def _context_menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.run_menu(index.data(RUN_ID_ROLE)).exec(self.table.viewport().mapToGlobal(pos))

    def run_menu(self, run_id: str) -> QMenu:
        """The right-click menu of one run."""
        menu = QMenu(self)
        selected = self.selected_run_ids()
        if run_id in selected and len(selected) > 1:
            menu.addAction(f"Plot the {len(selected)} runs against a parameter…", lambda: self.show_parameter_effect())
            menu.addSeparator()
        else:
            menu.addAction("Plot with its sweep against a parameter…",
                           lambda: self.show_parameter_effect([run_id]))
        menu.addAction("Show curves", lambda: self.open_curves.emit(run_id))
        menu.addAction("Chat with this run", lambda: self.chat_with.emit(run_id))
        resume = menu.addAction("Resume from checkpoint", lambda: self.resume_requested.emit(run_id))
        resume.setEnabled(self.session.store().get_run(run_id).status in RESUMABLE_STATUSES)
        resume.setToolTip("Continue this cancelled, interrupted or failed run in the Jobs tab")
        again = menu.addAction("Run again with changes…", lambda: self.launch_like.emit(run_id))
        again.setToolTip("Open this run's method, settings, base model and personas in the Launch tab")
        menu.addSeparator()
        menu.addAction("Rename…", lambda: self.rename(run_id))
        menu.addAction("Notes and tags…", lambda: self.edit_details(run_id))
        return menu

    def rename(self, run_id: str, name: str | None = None) -> bool:
        """Rename a run (asks for the name when ``name`` is None); a name another run has is refused."""
        store = self.session.store()
        run = store.get_run(run_id)
        if name is None:
            name, ok = QInputDialog.getText(self, "Rename run", f"New name of {run.id}:", text=run.name)
            if not ok:
                return False
        try:
            store.rename_run(run.id, name)
        except Exception as exc:  # noqa: BLE001 - StoreError: empty or taken name, shown as is
            QMessageBox.warning(self, "Cannot rename the run", str(exc))
            return False
        self.session.runs_changed.emit()
        return True

    def edit_details(self, run_id: str) -> None:
        run = self.session.store().get_run(run_id)
        dialog = RunDetailsDialog(run, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        name, tags, notes = dialog.values()
        self.set_details(run.id, tags=tags, notes=notes)
        if name != run.name:
            self.rename(run.id, name)

    def set_details(self, run_id: str, *, tags: list[str] | None = None, notes: str | None = None) -> None:
        fields = {k: v for k, v in (("tags", tags), ("notes", notes)) if v is not None}
        self.session.store().update_run(run_id, **fields)
        self.session.runs_changed.emit()

    def visible_run_ids(self) -> list[str]:
        return [self.proxy.index(r, 0).data(RUN_ID_ROLE) for r in range(self.proxy.rowCount())]

    def selected_run_ids(self) -> list[str]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [self.proxy.index(r, 0).data(RUN_ID_ROLE) for r in rows]

    def select_runs(self, run_ids: list[str]) -> None:
        sel = self.table.selectionModel()
        sel.clearSelection()
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data(RUN_ID_ROLE) in run_ids:
                sel.select(self.proxy.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def _selection_changed(self) -> None:
        ids = self.selected_run_ids()
        self.hint.setVisible(len(ids) < 2)
        self.compare.set_runs(ids)

    def export_model(self):
        from shpers_gui.widgets.export_dialog import open_export_dialog

        ids = self.selected_run_ids()
        return open_export_dialog(self, self.session, ids[0] if ids else None)

    def export(self, fmt: str, path: str | None = None) -> str:
        """Write the visible rows (in their shown order) as Markdown or CSV; returns the text."""
        rows = engine.get("study_rows")(self.session.store(), self.visible_run_ids()) if self.proxy.rowCount() else []
        text = engine.get("to_markdown" if fmt == "md" else "to_csv")(rows)
        return save_table_text(self, text, fmt, "Export runs", "runs", path)

    def study_table_text(self) -> str:
        """Table 5.1 over the finished runs, as Markdown."""
        store = self.session.store()
        ids = [r.id for r in store.list_runs(status="finished")]
        rows = engine.get("study_rows")(store, ids, pool_seeds=True) if ids else []
        return engine.get("to_markdown")(rows) if rows else "No finished runs yet.\n"

    def show_study_table(self) -> StudyTableDialog:
        store = self.session.store()
        # Oldest first: the order the study ran its rows in.
        dialog = StudyTableDialog(store, [r.id for r in reversed(store.list_runs(status="finished"))], self,
                                  settings=self.settings)
        dialog.show()
        return dialog

    def show_parameter_effect(self, run_ids: list[str] | None = None):
        """The selected runs' (or ``run_ids``') scores against the parameter they differ in, in a window of its
        own; one run brings the runs that differ from it in one setting alone (its sweep)."""
        ids = run_ids if run_ids is not None else self.selected_run_ids()
        if not ids:
            QMessageBox.information(self, "Against a parameter", "Select a run of a sweep (its other runs are found "
                                    "from it), or two or more runs of one method (Ctrl+click or Shift+click).")
            return None
        methods = sorted({r.method for r, _ in self.model.rows if r.id in ids})
        if len(methods) > 1:
            QMessageBox.information(self, "Against a parameter", f"The selected runs are of several methods "
                                    f"({', '.join(methods)}); select runs of one method.")
            return None
        dialog = ParameterEffectDialog(self.session.store(), ids, self)
        dialog.show()
        return dialog

    def delete_selected(self) -> None:
        """Delete the selected runs with the engine's delete (rows and run folders), after one
        confirmation naming what goes, the disk it frees and the runs built on them."""
        ids = self.selected_run_ids()
        if not ids:
            return
        store, workspace = self.session.store(), self.session.workspace
        try:
            plans = [engine.get("plan_delete")(workspace, store, rid) for rid in ids]
        except Exception as exc:  # noqa: BLE001 - a UserError (a running run), shown as is
            QMessageBox.warning(self, "Cannot delete", str(exc))
            return
        freed = engine.get("human_size")(sum(p.size_bytes for p in plans))
        text = (f"Delete {len(plans)} run(s) with their adapters and checkpoints? This frees {freed}.\n\n"
                + "\n\n".join(p.describe() for p in plans))
        answer = QMessageBox.question(self, "Delete runs", text)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            for rid in ids:
                engine.get("delete_run")(workspace, store, rid)
        except Exception as exc:  # noqa: BLE001 - StoreError or UserError, shown as is
            QMessageBox.warning(self, "Cannot delete", str(exc))
        self.session.runs_changed.emit()

"""The job queue with progress and ETA, live loss curves, a log, cancel/resume, stored curves."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from shpers_core.errors import UserError
from shpers_core.jobs.spec import JobSpec
from shpers_core.store import RESUMABLE_STATUSES
from shpers_gui import engine
from shpers_gui.job_queue import ACTIVE, CANCELLED, FAILED, FINISHED, INTERRUPTED, RUNNING, WAITING, Job
from shpers_gui.pending_jobs import PendingJob, save_pending
from shpers_gui.widgets.loss_plot import LossPlot
from shpers_gui.widgets.plot_export import add_export_button
from shpers_gui.widgets.table_model import RowTableModel

STATUS_COLOURS = {RUNNING: "#1f6fb2", FINISHED: "#2e7d32", FAILED: "#c62828", CANCELLED: "#8d6e63",
                  INTERRUPTED: "#ef6c00"}


def format_eta(seconds: float | None, complete: bool = True) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour); "≥ " when evaluation time is not known yet."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    text = f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else (
        f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s")
    return text if complete else f"≥ {text}"


class JobsModel(RowTableModel):
    """Rows are the queue's jobs, in submission order."""

    COLUMNS = ["Job", "Method", "Status", "Progress", "ETA", "Run", "Where"]
    PROGRESS = 3
    WHERE = 6

    def __init__(self, queue, parent=None):
        super().__init__(lambda: len(self.queue.jobs), parent)
        self.queue = queue
        self._where: dict[int, str] = {}  # job key -> where it runs (or ran), once known
        queue.job_added.connect(self._added)
        queue.job_changed.connect(self._changed)
        queue.job_log.connect(self._logged)
        queue.jobs_reordered.connect(self.refresh)


    def job(self, row: int) -> Job:
        return self.queue.jobs[row]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        job = self.queue.jobs[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return job.label
            if col == 1:
                return job.spec.method
            if col == 2:
                if job.status != RUNNING:
                    return job.status
                speed = f", {job.tokens_per_s:.0f} tokens/s" if job.phase == "training" and job.tokens_per_s else ""
                return f"running: {job.phase}{speed}"
            if col == self.PROGRESS:
                return round(job.fraction * 100)
            if col == 4:
                return format_eta(*job.job_eta())
            if col == 5:
                return job.run_name or job.run_id
            if col == self.WHERE:
                return self.where(job)
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return QColor(STATUS_COLOURS.get(job.status, "#555555"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 5 and job.run_id:
                return f"run {job.run_id}"
            if col == 4 and job.status == RUNNING:
                eta, complete = job.job_eta()
                return ("Time left for the whole job, evaluation included" if complete else
                        "Time left for training; evaluation comes after, its time is not known yet") if eta else None
            return job.error or None
        return None

    def where(self, job: Job) -> str:
        """"this machine", "Ray node IP (GPU n / CPU)" as the worker reported it, or "" while waiting.

        Live from the job's log; for an ended job whose placement was not seen here (its row was made
        for a stored run), from the run's stored log, which the driver wrote.
        """
        from shpers_core.distributed.placement import THIS_MACHINE, stored_placement

        if job.key in self._where:
            return self._where[job.key]
        if job.status == WAITING:
            return ""
        if job.status not in ACTIVE and job.run_id:
            try:
                self._where[job.key] = stored_placement(self.queue.session.store(), job.run_id)
            except Exception:  # noqa: BLE001 - a deleted run or a busy store: shown as unknown
                return ""
            return self._where[job.key]
        if getattr(job.worker, "runner", None) is not None:
            return "Ray cluster (being placed)"
        return THIS_MACHINE

    def _logged(self, job: Job, line: str) -> None:
        from shpers_core.distributed.placement import placement_in

        # The queue logs "[level] message"; the driver's line for each attempt names the node.
        where = placement_in(line.split("] ", 1)[-1])
        if where is not None and job in self.queue.jobs:
            self._where[job.key] = where
            row = self.queue.jobs.index(job)
            self.dataChanged.emit(self.index(row, self.WHERE), self.index(row, self.WHERE))

    def _added(self, job: Job) -> None:
        row = self.queue.jobs.index(job)
        self.beginInsertRows(QModelIndex(), row, row)
        self.endInsertRows()

    def _changed(self, job: Job) -> None:
        if job.status == WAITING:
            self._where.pop(job.key, None)  # resumed: it may run somewhere else this time
        if job in self.queue.jobs:
            row = self.queue.jobs.index(job)
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    def refresh(self) -> None:
        self.reset_with(lambda: None)


class ProgressDelegate(QStyledItemDelegate):
    """Paints the progress column as a progress bar."""

    def paint(self, painter, option, index):
        opt = QStyleOptionProgressBar()
        opt.rect = option.rect.adjusted(2, 3, -2, -3)
        opt.minimum, opt.maximum = 0, 100
        opt.progress = int(index.data() or 0)
        opt.text = f"{opt.progress} %"
        opt.textVisible = True
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, opt, painter)


class JobsView(QWidget):
    """The Jobs tab."""

    pending_queued = Signal(list)  # (PendingJob, Job) pairs: the jobs a last window left, queued again

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.queue = session.jobs
        self.model = JobsModel(self.queue, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(JobsModel.PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(5, 190)
        header.resizeSection(JobsModel.PROGRESS, 160)
        header.resizeSection(2, 230)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_log())

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the selected job at its next step (it keeps a checkpoint)")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Run the selected cancelled or interrupted run again from its checkpoint")
        self.resume_button.clicked.connect(self.resume_selected)
        self.next_button = QPushButton("Run next")
        self.next_button.setToolTip("Move the selected waiting job ahead of the other waiting ones")
        self.next_button.clicked.connect(self.run_selected_next)
        self.clear_button = QPushButton("Clear ended")
        self.clear_button.clicked.connect(self._clear_ended)
        self.stored_runs = QComboBox()
        self.stored_runs.setMinimumWidth(260)
        self.stored_runs.setToolTip("Any run in the store: add its curves to the plot")
        show = QPushButton("Show curves")
        show.clicked.connect(lambda: self.show_stored_curves(self.stored_runs.currentData()))
        clear_plot = QPushButton("Clear plot")
        clear_plot.clicked.connect(self._clear_plot)
        buttons = QHBoxLayout()
        for w in (self.cancel_button, self.resume_button, self.next_button, self.clear_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Stored run:"))
        buttons.addWidget(self.stored_runs)
        buttons.addWidget(show)
        buttons.addWidget(clear_plot)

        self.plot = LossPlot()
        plot_box = QWidget()
        pb = QVBoxLayout(plot_box)
        pb.setContentsMargins(0, 0, 0, 0)
        pb.addWidget(self.plot, 1)
        self.export_button = add_export_button(pb, self.plot.plot, "loss-curves")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("The selected job's log")
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(plot_box)
        bottom.addWidget(self.log)
        bottom.setSizes([700, 350])
        top = QWidget()
        top_lay = QVBoxLayout(top)
        top_lay.setContentsMargins(0, 0, 0, 0)
        top_lay.addWidget(self._pending_bar())
        top_lay.addWidget(self.table)
        top_lay.addLayout(buttons)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setSizes([260, 500])
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        self.queue.job_added.connect(self._job_added)
        self.queue.job_step.connect(lambda job, s, st, loss: self.plot.add_point(self._key(job), s, "train", st, loss))
        self.queue.job_validation.connect(
            lambda job, s, st, loss: self.plot.add_point(self._key(job), s, "val", st, loss))
        self.queue.job_log.connect(self._job_log)
        self.queue.job_changed.connect(self._job_changed)
        session.runs_changed.connect(self.refresh_stored)
        self.refresh_stored()
        self._update_buttons()

    @staticmethod
    def _key(job: Job) -> str:
        return f"job{job.key}"

    def selected_job(self) -> Job | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.job(rows[0].row()) if rows else None

    def _job_added(self, job: Job) -> None:
        self.plot.set_label(self._key(job), job.label)
        if self.selected_job() is None or self.selected_job().status not in ACTIVE:
            self.table.selectRow(self.queue.jobs.index(job))

    def _job_changed(self, job: Job) -> None:
        if job.run_name:
            self.plot.set_label(self._key(job), job.run_name)
        self._update_buttons()

    def _job_log(self, job: Job, line: str) -> None:
        if job is self.selected_job():
            self.log.appendPlainText(line)

    def _show_log(self) -> None:
        job = self.selected_job()
        self.log.setPlainText("\n".join(job.log) if job else "")
        self._update_buttons()

    def _update_buttons(self) -> None:
        job = self.selected_job()
        self.cancel_button.setEnabled(job is not None and job.status in ACTIVE)
        self.resume_button.setEnabled(job is not None and job.status in RESUMABLE_STATUSES and bool(job.run_id))
        self.next_button.setEnabled(job is not None and job.status == WAITING)

    def _pending_bar(self) -> QWidget:
        """Shown when the last window on this workspace closed with jobs left (see :meth:`offer_pending`)."""
        self.pending: list[PendingJob] = []
        self.pending_label = QLabel()
        self.pending_label.setWordWrap(True)
        again = QPushButton("Queue them again")
        again.setToolTip("The job that was running resumes from its checkpoint; the waiting ones queue in order")
        again.clicked.connect(self.queue_pending)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(self.dismiss_pending)
        self.pending_box = QFrame()
        self.pending_box.setObjectName("pendingJobs")
        self.pending_box.setStyleSheet("QFrame#pendingJobs { background: #fff4d6; border-radius: 3px; }")
        lay = QHBoxLayout(self.pending_box)
        lay.addWidget(self.pending_label, 1)
        lay.addWidget(again)
        lay.addWidget(dismiss)
        self.pending_box.hide()
        return self.pending_box

    def offer_pending(self, jobs: list[PendingJob]) -> None:
        """Offer to queue again the jobs the last window on this workspace left."""
        self.pending = list(jobs)
        if not jobs:
            self.pending_box.hide()
            return
        started = sum(bool(j.run_id) for j in jobs)
        names = ", ".join(j.spec.name or j.spec.method for j in jobs[:3]) + (", …" if len(jobs) > 3 else "")
        self.pending_label.setText(
            f"{len(jobs)} job(s) were left when shpers last closed on this workspace ({names})"
            + (f"; {started} had started and resume from a checkpoint." if started else "."))
        self.pending_box.show()

    def queue_pending(self) -> list[Job]:
        """Queue the offered jobs: started ones resume their runs (unless those finished or went since)."""
        pairs = []
        made: dict[int, Job] = {}
        finished: dict[int, str] = {}  # entries whose runs finished since: nothing to queue, but built on
        store = self.session.store()
        for i, pending in enumerate(self.pending):
            source = pending.builds_on
            spec = pending.spec
            if source in finished and not spec.source_run:
                spec = spec.replace(source_run=finished[source])
            if not pending.run_id:
                made[i] = self.queue.submit_once(spec)
            else:
                try:
                    status = store.get_run(pending.run_id).status
                except Exception:  # noqa: BLE001 - StoreError: the run was deleted since; nothing to resume
                    continue
                if status == FINISHED:
                    finished[i] = pending.run_id
                if status not in RESUMABLE_STATUSES:
                    continue
                made[i] = self.queue.resume(pending.run_id, spec)
            # A study's merge builds on its row's job again (a row that ends without a run stops it); the row
            # comes first in the list, so it is queued and the merge cannot start before this link.
            if source in made and not spec.source_run:
                made[i].builds_on = made[source]
            pairs.append((pending, made[i]))
        self.dismiss_pending()
        self.pending_queued.emit(pairs)
        return [job for _pending, job in pairs]

    def dismiss_pending(self) -> None:
        self.pending = []
        save_pending(self.session.root, [])
        self.pending_box.hide()

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.queue.cancel(job)

    def run_selected_next(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        try:
            self.queue.run_next(job)
        except UserError as exc:
            QMessageBox.warning(self, "Cannot run it next", str(exc))
            return
        self.table.selectRow(self.queue.jobs.index(job))

    def resume_selected(self) -> None:
        job = self.selected_job()
        if job is not None and job.run_id:
            self.resume_run(job.run_id)

    def resume_run(self, run_id: str) -> Job:
        """Queue ``run_id`` again (in its job's row, if it has one); the engine continues from its last checkpoint."""
        record = self.session.store().get_run(run_id)
        spec = JobSpec.from_dict(record.params)
        if record.status == "failed" and (record.error or "").startswith("checkpoint unreadable"):
            # Resuming would read the same broken checkpoint again: offer to start over instead.
            answer = QMessageBox.question(self, "Checkpoint unreadable",
                                          f"{record.error}\n\nRestart run {record.id} from the beginning?")
            if answer == QMessageBox.StandardButton.Yes:
                engine.get("discard_progress")(self.session.workspace, record.id)
        job = self.queue.resume(record.id, spec)
        self._show_log()
        return job

    def _clear_ended(self) -> None:
        self.queue.remove_ended()
        self.model.refresh()
        self._show_log()

    def _clear_plot(self) -> None:
        self.plot.clear()

    def refresh_stored(self) -> None:
        current = self.stored_runs.currentData()
        self.stored_runs.blockSignals(True)
        self.stored_runs.clear()
        for run in self.session.store().list_runs():
            self.stored_runs.addItem(f"{run.label} — {run.method} ({run.status})", run.id)
        i = self.stored_runs.findData(current)
        self.stored_runs.setCurrentIndex(max(i, 0))
        self.stored_runs.blockSignals(False)

    def show_stored_curves(self, run_id: str | None) -> None:
        """Add a stored run's curves to the plot (replacing them if already shown)."""
        if not run_id:
            return
        store = self.session.store()
        record = store.get_run(run_id)
        job = next((j for j in self.queue.jobs if j.run_id == record.id), None)
        key = self._key(job) if job is not None else f"run:{record.id}"
        self.plot.remove_run(key)
        self.plot.set_label(key, record.label)
        for name, curve in store.curves(record.id).items():
            series = name.rsplit("/", 1)[0] if name.endswith(("/train", "/val")) else name
            self.plot.set_curve(key, series, curve.kind, curve.steps, curve.values)

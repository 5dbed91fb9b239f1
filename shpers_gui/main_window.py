"""The main window: six tabs over one session, menus, shortcuts, status bar, saved layout."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSizePolicy,
    QTabWidget,
)

from shpers_core.errors import UserError
from shpers_gui import engine
from shpers_gui.job_queue import ACTIVE, FAILED, FINISHED, queue_summary, spec_to_run
from shpers_gui.pending_jobs import PendingJob, PendingSweep, read_pending, save_pending
from shpers_gui.widgets.chat_view import ChatView
from shpers_gui.widgets.grid_view import PersonaGridView
from shpers_gui.widgets.jobs_view import JobsView
from shpers_gui.widgets.launcher import LauncherView
from shpers_gui.widgets.personas_view import PersonasView
from shpers_gui.widgets.results_view import ResultsView
from shpers_gui.workers import run_call
from shpers_gui.workers.call_worker import abort_all_and_wait

log = logging.getLogger(__name__)


def load_dataset_file(path):
    return engine.get("load_dataset")(path)

def generate_and_write(path, n_personas: int | None = None, dialogues_per_persona: int | None = None):
    """Generate the default dataset (or a smaller one), write it to ``path`` and return it."""
    kwargs = {k: v for k, v in (("n_personas", n_personas), ("dialogues_per_persona", dialogues_per_persona))
              if v is not None}
    dataset = engine.get("generate_dataset")(**kwargs)
    engine.write_dataset(dataset, path)
    return engine.get("load_dataset")(path)

def device_and_models():
    from shpers_core.models import DEFAULT_MODEL, automatic_choice, describe_device, describe_models

    return describe_device(), describe_models(), DEFAULT_MODEL, automatic_choice()

class ElidedLabel(QLabel):
    """A one-line label that shortens its text in the middle instead of widening the window."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setWidth(min(hint.width(), 160))
        return hint

    def paintEvent(self, _event) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QPainter

        painter = QPainter(self)
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, self.contentsRect().width())
        painter.drawText(self.contentsRect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)


class MainWindow(QMainWindow):
    TABS = ("Personas", "Launch", "Jobs", "Results", "Grid", "Chat")

    def __init__(self, session, *, settings: QSettings | None = None, ask_on_close: bool = True):
        super().__init__()
        self.session = session
        self.ask_on_close = ask_on_close
        self.settings = settings or QSettings("shpers", "shpers")
        self.setWindowTitle(f"shpers — {session.root}")
        self.personas = PersonasView(session)
        self.launcher = LauncherView(session, settings=self.settings)
        self.jobs = JobsView(session)
        self.results = ResultsView(session, settings=self.settings)
        self.grid = PersonaGridView(session)
        self.chat = ChatView(session)
        self.tabs = QTabWidget()
        for name, view in zip(self.TABS, (self.personas, self.launcher, self.jobs, self.results, self.grid,
                                          self.chat)):
            view.setObjectName(name.lower())
            self.tabs.addTab(view, name)
        self.setCentralWidget(self.tabs)
        self.launcher.submitted.connect(lambda _jobs: self.tabs.setCurrentWidget(self.jobs))
        self.results.open_curves.connect(self.show_run_curves)
        self.results.chat_with.connect(self.chat_with_run)
        self.results.resume_requested.connect(self.resume_run)
        self.results.launch_like.connect(self.launch_like)
        self.session.jobs.job_ended.connect(self._job_ended)
        # Queued sweeps not yet ended: their jobs, parameter, the run whose settings the Launch tab held (Run
        # again with changes…), which their curve goes through where it differs in that parameter alone, and
        # their runs that finished before a restart.
        self._sweeps: list[tuple[list, str, str | None, tuple[str, ...]]] = []
        self._loaded_run: str | None = None
        self.launcher.sweep_queued.connect(
            lambda jobs, key: self._sweeps.append((list(jobs), key, self._loaded_run, ())))
        self.jobs.pending_queued.connect(self._sweeps_queued_again)
        # The title tells a researcher working in another window how far the queue is.
        self._title_timer = QTimer(self)
        self._title_timer.setInterval(5000)
        self._title_timer.timeout.connect(self._update_title)
        for signal in (self.session.jobs.job_added, self.session.jobs.job_changed, self.session.jobs.job_ended,
                       self.session.jobs.jobs_reordered):
            signal.connect(lambda *_: self._update_title())
        self._build_menus()
        self._build_status_bar()
        self.session.dataset_changed.connect(self._dataset_label_update)
        self.resize(1400, 900)
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        self.tabs.setCurrentIndex(int(self.settings.value("window/tab", 0)))
        self._busy_tasks = 0
        run_call(device_and_models, on_result=self._device_known, on_error=lambda m, _t: self.device.setText(
            f"device: unknown ({m})"))

    # -- chrome -----------------------------------------------------------------------------

    def _action(self, menu, text, slot, shortcut=None, tip=""):
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open dataset…", self.open_dataset_dialog, QKeySequence.StandardKey.Open,
                     "Load a dataset (JSON, JSONL or a folder); it is validated first")
        self._action(file, "&Generate dataset…", self.generate_dataset_dialog, None,
                     "Generate a synthetic dataset into this workspace")
        self._action(file, "&Import dataset…", self.import_dataset_dialog, None,
                     "Convert an EdgeWisePersona, chat-layout or shpers dataset into this workspace")
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence("Ctrl+Q"))
        run = bar.addMenu("&Run")
        self._action(run, "&Queue job", self.launcher.queue_job, "Ctrl+R", "Queue the Launch tab's job")
        self._action(run, "Queue &sweep", self.launcher.queue_sweep, "Ctrl+Shift+R")
        self._action(run, "Run the whole &study", self.launcher.queue_study, None)
        self._action(run, "&Cancel selected job", self.jobs.cancel_selected, "Ctrl+.")
        view = bar.addMenu("&View")
        for i, name in enumerate(self.TABS):
            self._action(view, name, lambda _c=False, i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        view.addSeparator()
        self._action(view, "&Refresh", self.session.runs_changed.emit, QKeySequence.StandardKey.Refresh)
        self._action(view, "Table 5.1", self.results.show_study_table, "Ctrl+T")
        helpm = bar.addMenu("&Help")
        self._action(helpm, "&First steps", lambda: self.show_help("first steps"), QKeySequence.StandardKey.HelpContents,
                     "Generate or import data, launch unified LoRA, compare, chat")
        self._action(helpm, "&Keyboard shortcuts", lambda: self.show_help("shortcuts"))
        self._action(helpm, "What does ★ mean?", lambda: self.show_help("star"))
        helpm.addSeparator()
        self._action(helpm, "&About shpers", lambda: self.show_help("about"))

    def help_text(self, page: str) -> str:
        """The HTML of a Help page: "first steps", "shortcuts", "star" or "about"."""
        from shpers_gui.widgets import help as pages

        if page == "first steps":
            return pages.FIRST_STEPS
        if page == "shortcuts":
            return pages.shortcuts_html(shortcut_text(self))
        if page == "star":
            return pages.STAR
        return pages.about_html(self.device.text().removeprefix("device: "))

    def show_help(self, page: str):
        from shpers_gui.widgets.help import show_page

        titles = {"first steps": "First steps", "shortcuts": "Keyboard shortcuts", "star": "What ★ means",
                  "about": "About shpers"}
        return show_page(self, titles[page], self.help_text(page))

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device = QLabel("device: …")
        self.workspace_label = ElidedLabel(f"workspace: {self.session.root}")
        self.workspace_label.setToolTip(str(self.session.root))
        self.dataset_label = QLabel("no dataset")
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(160)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.busy_label = QLabel()
        bar.addWidget(self.busy_label)
        bar.addWidget(self.busy)
        bar.addPermanentWidget(self.dataset_label)
        bar.addPermanentWidget(self.workspace_label)
        bar.addPermanentWidget(self.device)

    def _device_known(self, result) -> None:
        device, models, default, (picked, dtype, why) = result
        self.device.setText(f"device: {device}, {dtype}")
        self.device.setToolTip(f"Jobs set to automatic run on {picked} with the base model in {dtype}: {why}")
        self.launcher.set_models(models, default)
        self.launcher.set_automatic(picked, dtype, why)

    def _dataset_label_update(self) -> None:
        ds = self.session.dataset
        if ds is None:
            self.dataset_label.setText("no dataset")
            return
        n = sum(len(p.dialogues) for p in ds.personas.values())
        self.dataset_label.setText(f"{Path(self.session.dataset_path).name}: {len(ds.personas)} personas, "
                                   f"{n} dialogues")
        self.dataset_label.setToolTip(str(self.session.dataset_path))

    def _task(self, text: str, on: bool) -> None:
        self._busy_tasks += 1 if on else -1
        self.busy.setVisible(self._busy_tasks > 0)
        self.busy_label.setText(text if on else "")

    def show_run_curves(self, run_id: str) -> None:
        """A stored run's loss curves in the Jobs tab."""
        self.jobs.show_stored_curves(run_id)
        self.tabs.setCurrentWidget(self.jobs)

    def resume_run(self, run_id: str) -> None:
        """Continue a stopped run (from Results, after a restart too) and show it in the Jobs tab."""
        self.jobs.resume_run(run_id)
        self.tabs.setCurrentWidget(self.jobs)

    def _update_title(self) -> None:
        summary = queue_summary(self.session.jobs.jobs)
        self.setWindowTitle(f"shpers — {summary} — {self.session.root}" if summary else f"shpers — {self.session.root}")
        if summary and not self._title_timer.isActive():
            self._title_timer.start()
        elif not summary:
            self._title_timer.stop()

    def launch_like(self, run_id: str) -> None:
        """A stored run's job in the Launch tab, ready to change and queue."""
        record = self.session.store().get_run(run_id)
        try:
            # Built on what the run built on: a sweep around a merge varies the merge, not its adapters.
            spec = engine.get("built_like")(engine.get("JobSpec").from_dict(record.params), record.parent_run_id)
        except UserError as exc:  # e.g. a method this build no longer has
            QMessageBox.warning(self, "Cannot run it again", f"Run {record.label}: {exc}")
            return
        missing = self.launcher.load_spec(spec)
        self._loaded_run = record.id
        self.tabs.setCurrentWidget(self.launcher)
        note = (f"; {len(missing)} of its personas are not in the loaded dataset ({', '.join(missing[:3])}"
                f"{', …' if len(missing) > 3 else ''})" if missing else "")
        dataset = self.session.dataset
        if dataset is not None and record.dataset_hash and record.dataset_hash != dataset.content_hash():
            note += f"; it ran on other data ({Path(record.dataset_path).name}): the job uses the loaded dataset"
        self.statusBar().showMessage(f"Launch: the settings of run {record.label}{note}", 15000)

    def chat_with_run(self, run_id: str) -> None:
        self.chat.choose_run(run_id)
        self.tabs.setCurrentWidget(self.chat)

    def _job_ended(self, job) -> None:
        self.statusBar().showMessage(f"{job.label}: {job.status}" + (f" — {job.error}" if job.error else ""), 10000)
        self._sweep_ended(job)
        if not self.session.jobs.active() or job.status == FAILED:
            # The queue is done, or needs a look: the taskbar entry asks for attention (no-op when in front).
            QApplication.alert(self)

    def _sweep_ended(self, job) -> None:
        """When the last job of a queued sweep ends, select its finished runs in Results and say where the
        curve is, so the next click draws it."""
        for sweep in list(self._sweeps):
            jobs, key, loaded, before = sweep
            if job not in jobs or any(j.status in ACTIVE for j in jobs):
                continue
            self._sweeps.remove(sweep)
            finished = _sweep_runs(jobs, before)
            try:
                start = engine.get("like_point")(self.session.store(), loaded, key, finished)
            except UserError:  # deleted since
                start = []
            if len(finished) + len(start) < 2:
                continue
            self.results.refresh()
            self.results.select_runs(finished + start)
            also = f" and the run it started from ({start[0]})" if start else ""
            self.statusBar().showMessage(f"Sweep of {key} done: {len(finished) + len(start)} runs selected in "
                                         f"Results ({len(finished)} of the sweep{also}); Against a parameter… "
                                         "draws the curve", 30000)

    def _sweeps_queued_again(self, pairs: list) -> None:
        """Jobs a last window left, queued again: those of one sweep are tracked as that sweep once more."""
        again: dict[int, tuple[list, object]] = {}
        for pending, job in pairs:
            if pending.sweep is not None:
                again.setdefault(pending.sweep.number, ([], pending.sweep))[0].append(job)
        for jobs, sweep in again.values():
            self._sweeps.append((jobs, sweep.parameter, sweep.loaded_run or None, sweep.finished))

    def _pending_sweep(self, job, numbers: dict, first: int) -> PendingSweep | None:
        """What a job left running or waiting at close keeps of its sweep (``numbers``: the sweeps numbered so
        far, from ``first``)."""
        for jobs, key, loaded, before in self._sweeps:
            if job in jobs:
                number = numbers.setdefault(id(jobs), first + len(numbers))
                return PendingSweep(number, key, loaded or "", tuple(_sweep_runs(jobs, before)))
        return None

    # -- dataset ----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the workspace's dataset, generating the default one first if there is none, and offer
        the jobs the last window on this workspace left."""
        path = self.session.workspace.dataset_path
        if path.exists():
            self.load_dataset(path)
        else:
            self.generate_dataset(path)
        pending = read_pending(self.session.root)
        if pending:
            self.jobs.offer_pending(pending)
            self.statusBar().showMessage(f"{len(pending)} job(s) left from last time: see the Jobs tab", 15000)

    def load_dataset(self, path) -> None:
        self._task(f"loading {Path(path).name}…", True)
        run_call(load_dataset_file, path,
                 on_result=lambda ds, p=path: (self._task("", False), self.session.set_dataset(ds, Path(p))),
                 on_error=lambda msg, _tb, p=path: (self._task("", False), self._dataset_error(p, msg)))

    def generate_dataset(self, path, n_personas: int | None = None, dialogues_per_persona: int | None = None) -> None:
        self._task("generating the dataset…", True)
        run_call(generate_and_write, path, n_personas, dialogues_per_persona,
                 on_result=lambda ds, p=path: (self._task("", False), self.session.set_dataset(ds, Path(p))),
                 on_error=lambda msg, _tb, p=path: (self._task("", False), self._dataset_error(p, msg)))

    def _dataset_error(self, path, message: str) -> None:
        QMessageBox.critical(self, "The dataset cannot be used",
                             f"{path}\n\n{message}\n\nFix the record named above, or open another dataset.")

    def open_dataset_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset", str(self.session.root),
                                              "Dialogues (*.jsonl *.json);;All files (*)")
        if path:
            self.load_dataset(path)

    def generate_dataset_dialog(self) -> None:
        n, ok = QInputDialog.getInt(self, "Generate dataset", "Personas:", 200, 2, 100000)
        if not ok:
            return
        d, ok = QInputDialog.getInt(self, "Generate dataset", "Dialogues per persona:", 30, 3, 10000)
        if ok:
            self.generate_dataset(self.session.workspace.dataset_path, n, d)

    def import_dataset_dialog(self):
        from shpers_gui.widgets.import_dialog import ImportDialog

        dialog = ImportDialog(self.session, self)
        dialog.imported.connect(lambda text: self.statusBar().showMessage(text, 15000))
        dialog.show()
        return dialog

    # -- closing ----------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        active = self.session.jobs.active()
        if active and self.ask_on_close:
            answer = QMessageBox.question(
                self, "Jobs are running",
                f"{len(active)} job(s) are running or waiting. Stop them and quit?\n"
                "The running job keeps a checkpoint. When you open this workspace again, shpers offers to "
                "continue it and queue the waiting ones.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        # Each job's sweep, read before the cancel ends them (and with them the sweeps); sweeps still on offer
        # from the last window keep their numbers, this window's come after them.
        first = max((p.sweep.number for p in self.jobs.pending if p.sweep is not None), default=-1) + 1
        numbers: dict[int, int] = {}
        sweeps = {id(j): self._pending_sweep(j, numbers, first) for j in active}
        self._sweeps = []
        self.statusBar().showMessage("stopping jobs…")
        self.session.jobs.cancel_all_and_wait()
        # After the cancel, a job that had started knows its run.
        try:
            # Jobs offered at start and not acted on stay offered.
            # A study's merge whose row finished names that row's run; one whose row is left too keeps pointing
            # at it: after a restart it builds on that row still.
            kept = self.jobs.pending
            index = {id(j): len(kept) + i for i, j in enumerate(active)}
            left = [PendingJob(spec_to_run(j), j.run_id, sweeps[id(j)], index.get(id(j.builds_on))) for j in active]
            save_pending(self.session.root, kept + left)
        except OSError as exc:  # a full disk or a read-only workspace must not keep the window open
            log.warning("could not keep the jobs left for next time: %s", exc)
        self.chat.stop()
        abort_all_and_wait()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/tab", self.tabs.currentIndex())
        self.session.close()
        event.accept()

def _sweep_runs(jobs: list, before: tuple[str, ...]) -> list[str]:
    """A sweep's finished runs: those that finished before a restart, then its jobs' that have."""
    return [*before, *(j.run_id for j in jobs if j.status == FINISHED and j.run_id)]


def shortcut_text(window: MainWindow) -> dict[str, str]:
    """Every action's shortcut, for help and tests."""
    return {a.text().replace("&", ""): a.shortcut().toString() for a in window.findChildren(QAction)
            if not a.shortcut().isEmpty()}

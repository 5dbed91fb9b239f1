"""The Launcher tab: a method, its parameters, personas and base model → jobs in the queue.

Also a sweep (one parameter, several values → one job per value) and the whole study as one
action (``study_specs`` of a preset).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from shpers_core.errors import UserError
from shpers_core.jobs.spec import DEVICE_HELP, DEVICES, DTYPE_HELP, DTYPES, build_spec
from shpers_core.jobs.sweep import sweep_parameter, sweep_specs
from shpers_core.methods.registry import METHODS
from shpers_gui import engine
from shpers_gui.widgets.param_form import ParamForm

SOURCE_HELP = ("The run a merge or prefix builds on: a per-persona LoRA run's adapters (merges) or a unified LoRA "
               "run's adapter (prefixes, retrieval). The newest: whichever such run on this base model, data and "
               "personas finished last when the job starts (one is trained first where there is none)")
# Jobs estimated longer than this are confirmed before they are queued.
CONFIRM_ABOVE_S = 600.0
# Without a measured speed, a job training on more tokens than this is confirmed too.
UNMEASURED_CONFIRM_TOKENS = 200_000


class LauncherView(QWidget):
    """Builds validated :class:`JobSpec` objects and submits them to the session's queue."""

    submitted = Signal(list)  # the jobs just queued
    sweep_queued = Signal(list, str)  # a sweep's jobs and the parameter they vary ("group.name")

    def __init__(self, session, parent=None, *, settings=None):
        super().__init__(parent)
        self.session = session
        self.settings = settings  # a QSettings: the device and dtype last chosen, kept across restarts
        self.method = QComboBox()
        for spec in METHODS.values():
            self.method.addItem(spec.title, spec.name)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: #444;")
        self.base_model = QComboBox()
        self.base_model.setEditable(True)
        self.base_model.setToolTip("A named model, a local folder or a hub id")
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("optional run name")
        self.source = QComboBox()
        self.source.currentIndexChanged.connect(lambda _i: self._cost_timer.start())
        self.source.currentIndexChanged.connect(lambda _i: self.source.setToolTip(
            f"{SOURCE_HELP}\n\nChosen: {self.source.currentText()}"))
        # Long study names end in the run id that tells two apart: the list cuts them in the middle.
        self.source.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.source.setMinimumContentsLength(20)
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        # None: the engine picks for the machine the job runs on; set_automatic says what that is here.
        self.device = QComboBox()
        self.device.setToolTip(DEVICE_HELP[0].upper() + DEVICE_HELP[1:])
        self.dtype = QComboBox()
        self.dtype.setToolTip(DTYPE_HELP[0].upper() + DTYPE_HELP[1:])
        for key, box, names in (("device", self.device, DEVICES), ("dtype", self.dtype, DTYPES)):
            box.addItem("automatic", None)
            for name in names:
                box.addItem(name, name)
            self._restore_choice(key, box)
            box.currentIndexChanged.connect(lambda _i, key=key, box=box: self._remember_choice(key, box))
        self.run_on = QComboBox()
        self.run_on.addItem("this machine", "local")
        self.run_on.addItem("Ray cluster", "ray")
        self.run_on.setToolTip("Where queued jobs run; remembered for this workspace")
        self.ray_address = QLineEdit()
        self.ray_address.setPlaceholderText("head host:port (empty: a local Ray instance)")
        kind, address = engine.get("load_executor_choice")(session.workspace)
        self.run_on.setCurrentIndex(max(0, self.run_on.findData(kind)))
        self.ray_address.setText(address)
        self.ray_address.setEnabled(kind == "ray")
        session.executor = (kind, address)
        self.run_on.currentIndexChanged.connect(lambda _i: self._executor_changed())
        self.ray_address.editingFinished.connect(self._executor_changed)

        self.personas = QListWidget()
        self.personas.setToolTip("Checked personas are trained and evaluated; with none checked nothing can be queued")
        pick = QHBoxLayout()
        for text, slot in (("All", lambda: self._check(None)), ("None", lambda: self._check([])),
                           ("From Personas tab", lambda: self._check(self.session.selected_personas))):
            b = QPushButton(text)
            b.clicked.connect(slot)
            pick.addWidget(b)
        self.cluster = QComboBox()
        self.cluster.setToolTip("Check the members of one cluster of the persona map")
        self.cluster.activated.connect(self._pick_cluster)
        pick.addWidget(self.cluster)
        self.persona_count = QLabel()
        self.personas.itemChanged.connect(lambda _i: self._update_count())
        self.cost = QLabel()
        self.cost.setWordWrap(True)
        self.cost.setStyleSheet("color: #333; padding: 2px;")
        self.cost.setToolTip("Estimated from this machine's measured speed on earlier runs of the same base model")
        # The estimate splits the dataset and reads the store: once per burst of edits, not per keystroke.
        self._cost_timer = QTimer(self)
        self._cost_timer.setSingleShot(True)
        self._cost_timer.setInterval(250)
        self._cost_timer.timeout.connect(self.update_cost)
        self._cost_timer.timeout.connect(self.update_sweep_cost)

        self.preset = QComboBox()
        self.preset.setToolTip("Study presets from the engine: their settings fill the form")
        self.preset.addItem("(engine defaults)", None)
        self._presets = engine.get("PRESETS")
        for name, p in self._presets.items():
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, p.description, Qt.ItemDataRole.ToolTipRole)
        self.preset.currentIndexChanged.connect(self._apply_preset)

        self.form = ParamForm()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)

        self.queue_button = QPushButton("Queue job")
        self.queue_button.setToolTip("Queue one job with these settings (Ctrl+R)")
        self.queue_button.setDefault(True)
        self.queue_button.clicked.connect(self.queue_job)
        self.study_button = QPushButton("Run the whole study")
        self.study_button.setToolTip("Queue one job per study row with the chosen preset, model and personas")
        self.study_button.clicked.connect(self.queue_study)
        self.study_seeds = QLineEdit()
        self.study_seeds.setPlaceholderText("the preset's (one run per row); e.g. 0, 1, 2")
        self.study_seeds.setToolTip("Training seeds for Run the whole study: with several, every row that depends on "
                                    "the seed runs once per seed, one pass of the study after another, and Table 5.1 "
                                    "pools them into one row")

        self.sweep_param = QComboBox()
        self.sweep_param.setToolTip("The parameter to vary; every other field keeps the form's value")
        self._sweep_choice = "train.learning_rate"  # kept across methods until the user picks another
        self.sweep_param.activated.connect(lambda i: setattr(self, "_sweep_choice", self.sweep_param.itemData(i)))
        self.sweep_values = QLineEdit()
        self.sweep_values.setPlaceholderText("values, comma-separated, e.g. 1e-4, 5e-4, 1e-3")
        self.sweep_seeds = QLineEdit()
        self.sweep_seeds.setPlaceholderText("the form's training seed; e.g. 0, 1, 2")
        self.sweep_seeds.setToolTip("Training seeds for the sweep: with several, every value runs once per seed, one "
                                    "pass over the values after another, and the curve (Against a parameter…) "
                                    "pools each value's seeds persona by persona")
        self.sweep_button = QPushButton("Queue sweep")
        self.sweep_button.clicked.connect(self.queue_sweep)
        sweep_box = QGroupBox("Sweep")
        sl = QFormLayout(sweep_box)
        sl.addRow("Parameter", self.sweep_param)
        sl.addRow("Values", self.sweep_values)
        sl.addRow("Seeds", self.sweep_seeds)
        self.sweep_cost = QLabel()
        self.sweep_cost.setWordWrap(True)
        sl.addRow("", self.sweep_cost)
        for edit in (self.sweep_values, self.sweep_seeds):
            edit.textChanged.connect(lambda _t: self._cost_timer.start())
        self.sweep_param.currentIndexChanged.connect(lambda _i: self._cost_timer.start())
        sl.addRow("", self.sweep_button)

        job_box = QGroupBox("Job")
        jl = self._job_rows = QFormLayout(job_box)
        jl.addRow("Method", self.method)
        jl.addRow("", self.summary)
        jl.addRow("Base model", self.base_model)
        jl.addRow("Builds on", self.source)
        jl.addRow("Device", self.device)
        jl.addRow("Model dtype", self.dtype)
        jl.addRow("Preset", self.preset)
        jl.addRow("Name", self.run_name)
        jl.addRow("Study seeds", self.study_seeds)
        jl.addRow("Run on", self.run_on)
        jl.addRow("Ray address", self.ray_address)
        persona_box = QGroupBox("Personas")
        pl = QVBoxLayout(persona_box)
        pl.addLayout(pick)
        pl.addWidget(self.personas)
        pl.addWidget(self.persona_count)
        actions = QHBoxLayout()
        actions.addWidget(self.queue_button)
        actions.addWidget(self.study_button)
        cost_box = QGroupBox("Cost of this job")
        cl = QVBoxLayout(cost_box)
        cl.addWidget(self.cost)
        # On a small screen the boxes scroll, so the persona list keeps room for several rows,
        # while the cost and the Queue buttons below stay in view.
        self.personas.setMinimumHeight(150)
        boxes = QWidget()
        bl = QVBoxLayout(boxes)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(job_box)
        bl.addWidget(persona_box, 1)
        bl.addWidget(sweep_box)
        boxes_scroll = QScrollArea()
        boxes_scroll.setWidgetResizable(True)
        boxes_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        boxes_scroll.setWidget(boxes)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(boxes_scroll, 1)
        ll.addWidget(cost_box)
        ll.addLayout(actions)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(scroll)
        split.setSizes([520, 700])
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        self.form.changed.connect(self._fill_sweep_params)
        self.form.changed.connect(self._fill_sources)  # retrieval builds on unified LoRA only when set to
        self.base_model.currentTextChanged.connect(lambda _t: self._fill_sources())
        session.runs_changed.connect(self._fill_sources)
        self.form.changed.connect(self._cost_timer.start)
        self.base_model.currentTextChanged.connect(lambda _t: self._cost_timer.start())
        self.dtype.currentIndexChanged.connect(lambda _i: self._cost_timer.start())  # speeds differ by dtype
        session.runs_changed.connect(self._cost_timer.start)
        session.dataset_changed.connect(self._fill_personas)
        session.clusters_changed.connect(self._fill_clusters)
        self._fill_personas()
        self._fill_clusters()
        self._method_changed()

    def _executor_changed(self) -> None:
        kind, address = self.run_on.currentData(), self.ray_address.text().strip()
        self.ray_address.setEnabled(kind == "ray")
        self.session.executor = (kind, address)
        try:
            engine.get("save_executor_choice")(self.session.workspace, kind, address)
        except OSError as exc:  # a read-only workspace: the choice still holds for this session
            QMessageBox.warning(self, "Run on", f"Cannot remember the choice: {exc}")

    def set_models(self, models: list[dict], default: str) -> None:
        """Fill the base model chooser from ``describe_models()``."""
        current = self.base_model.currentText() or default
        self.base_model.clear()
        for m in models:
            self.base_model.addItem(m["name"], m["name"])
            self.base_model.setItemData(self.base_model.count() - 1, m["description"], Qt.ItemDataRole.ToolTipRole)
        self.base_model.setCurrentText(current)

    # -- personas ---------------------------------------------------------------------------

    def _fill_personas(self) -> None:
        self.personas.blockSignals(True)
        self.personas.clear()
        ds = self.session.dataset
        for pid in ds.persona_ids if ds is not None else []:
            item = QListWidgetItem(pid)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(ds.personas[pid].character)
            self.personas.addItem(item)
        self.personas.blockSignals(False)
        self._update_count()

    def _fill_clusters(self) -> None:
        self.cluster.clear()
        self.cluster.addItem("Cluster…", None)
        for c in sorted(set(self.session.clusters.values())):
            n = sum(1 for v in self.session.clusters.values() if v == c)
            self.cluster.addItem(f"cluster {c} ({n})", c)
        self.cluster.setEnabled(bool(self.session.clusters))

    def _pick_cluster(self, index: int) -> None:
        c = self.cluster.itemData(index)
        if c is not None:
            self._check([p for p, v in self.session.clusters.items() if v == c])

    def _check(self, ids: list[str] | None) -> None:
        """Check exactly ``ids`` (None: all)."""
        wanted = None if ids is None else set(ids)
        self.personas.blockSignals(True)
        for i in range(self.personas.count()):
            item = self.personas.item(i)
            on = wanted is None or item.text() in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.personas.blockSignals(False)
        self._update_count()

    def checked_personas(self) -> list[str]:
        """The checked persona ids; empty when none is checked."""
        return [self.personas.item(i).text() for i in range(self.personas.count())
                if self.personas.item(i).checkState() == Qt.CheckState.Checked]

    def selected_personas(self) -> list[str]:
        """The personas of a job as the engine takes them: every one checked is ``[]`` (all)."""
        ids = self.checked_personas()
        return [] if len(ids) == self.personas.count() else ids

    def set_personas(self, ids: list[str] | None) -> None:
        self._check(ids)

    def _update_count(self) -> None:
        n = len(self.checked_personas())
        total = self.personas.count()
        if n == 0:
            self.persona_count.setText("No persona checked: check some to queue a job.")
            self.persona_count.setStyleSheet("color: #c62828;")
        else:
            self.persona_count.setText(f"all {total} personas" if n == total else f"{n} of {total} personas")
            self.persona_count.setStyleSheet("")
        for b in (self.queue_button, self.sweep_button):
            b.setEnabled(n > 0)
        self._cost_timer.start()

    def update_cost(self):
        """Show (and return) what the form's job would cost, or why it cannot be estimated."""
        if not self.checked_personas():
            self.cost.setText("Nothing to run: no persona is checked.")
            return None
        try:
            spec = self.build()
            estimate = engine.get("estimate_job")(spec, self.session.dataset, self.session.store())
        except UserError as exc:
            self.cost.setText(f"Cannot queue yet: {exc}")
            return None
        self.cost.setText(estimate.summary())
        return estimate

    # -- method and presets -----------------------------------------------------------------

    def set_method(self, name: str) -> None:
        self.method.setCurrentIndex(self.method.findData(name))

    def _method_changed(self) -> None:
        spec = METHODS[self.method.currentData()]
        self.summary.setText(spec.summary)
        self.form.set_method(spec.name)
        self._apply_preset()

    def _source_methods(self) -> tuple[str, ...]:
        """The methods whose runs the form's job builds on."""
        method = METHODS[self.method.currentData()]
        try:
            return method.sources(build_spec(method.name, self.form.values()).method_params)
        except UserError:  # mid-edit: whatever the method may need
            return method.requires

    def _fill_sources(self) -> None:
        """List the finished runs the job may build on; the row shows only for a method that builds on one."""
        methods = self._source_methods()
        self._job_rows.setRowVisible(self.source, bool(methods))
        if not methods:
            return
        chosen = self.source.currentData()
        model = self.base_model.currentText().strip()
        runs = [r for m in methods for r in self.session.store().list_runs(status="finished", method=m)
                if r.base_model == model]
        items = [("the newest when the job starts", "")] + [(f"{r.label}  ({r.id})", r.id) for r in runs]
        if [self.source.itemData(i) for i in range(self.source.count())] == [d for _t, d in items]:
            return
        self.source.blockSignals(True)
        self.source.clear()
        for text, data in items:
            self.source.addItem(text, data)
            self.source.setItemData(self.source.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.source.setCurrentIndex(max(0, self.source.findData(chosen)))
        self.source.blockSignals(False)

    def choose_source(self, run_id: str) -> None:
        """Build on ``run_id`` (listed even where the chosen base model differs: the job then says why not)."""
        self._fill_sources()
        if run_id and self.source.findData(run_id) < 0:
            self.source.addItem(run_id, run_id)
        self.source.setCurrentIndex(max(0, self.source.findData(run_id)))

    def source_run(self) -> dict[str, str]:
        """The run the job builds on as a job field (empty: the newest)."""
        chosen = self.source.currentData() if self._source_methods() else None
        return {"source_run": chosen or ""}

    def _apply_preset(self) -> None:
        name = self.preset.currentData()
        self.form.reset()
        if name is None:
            return
        p = self._presets[name]
        self.form.set_values(p.overrides)
        self.base_model.setCurrentText(p.base_model)

    def _fill_sweep_params(self) -> None:
        current = self._sweep_choice
        keys = [k for k, spec in self.form.specs().items() if spec.type in (int, float, str, bool)]
        if keys == [self.sweep_param.itemData(i) for i in range(self.sweep_param.count())]:
            return
        self.sweep_param.clear()
        for key, spec in self.form.specs().items():
            if key in keys:
                self.sweep_param.addItem(key, key)
                self.sweep_param.setItemData(self.sweep_param.count() - 1, spec.help, Qt.ItemDataRole.ToolTipRole)
        self.sweep_param.setCurrentIndex(max(self.sweep_param.findData(current), 0))

    # -- building and queueing --------------------------------------------------------------

    def build(self, changes: dict | None = None, name: str | None = None):
        """A validated spec from the form (plus ``changes``); raises UserError on bad input."""
        if self.session.dataset is None:
            raise UserError("no dataset is loaded: File ▸ Open dataset… or generate one first")
        overrides = {**self.form.values(), **(changes or {})}
        return build_spec(self.method.currentData(), overrides,
                          base_model=self.base_model.currentText().strip(),
                          personas=self.selected_personas(), name=self.run_name.text().strip() if name is None else name,
                          dataset_path=self.session.job_dataset_path(), **self.hardware(), **self.source_run())

    def load_spec(self, spec) -> list[str]:
        """Fill the form with a stored run's job (:class:`JobSpec`), to change a setting and queue it again.

        Returns its personas the loaded dataset lacks (they stay unchecked).
        """
        self.preset.setCurrentIndex(0)  # a preset would overwrite the run's settings
        self.set_method(spec.method)
        self.form.set_values(spec.form_values())
        self.base_model.setCurrentText(spec.base_model)
        self.run_name.setText(spec.name)
        self.run_name.setCursorPosition(0)  # long study names differ at their start
        self.choose_source(spec.source_run)
        for box, value in ((self.device, spec.device), (self.dtype, spec.dtype)):
            if value and box.findData(value) < 0:  # e.g. "cuda:1"
                box.addItem(value, value)
            box.setCurrentIndex(max(0, box.findData(value)))
        listed = {self.personas.item(i).text() for i in range(self.personas.count())}
        self._check(None if not spec.personas else spec.personas)
        return [p for p in spec.personas if p not in listed]

    def _restore_choice(self, key: str, box: QComboBox) -> None:
        value = str(self.settings.value(f"launcher/{key}", "")) if self.settings is not None else ""
        if value and box.findData(value) < 0 and key == "device" and value.startswith("cuda:"):
            box.addItem(value, value)  # a GPU index a run asked for
        box.setCurrentIndex(max(0, box.findData(value)) if value else 0)

    def _remember_choice(self, key: str, box: QComboBox) -> None:
        if self.settings is not None:
            self.settings.setValue(f"launcher/{key}", box.currentData() or "")

    def hardware(self) -> dict[str, str | None]:
        """The job's device and dtype as chosen (None: automatic)."""
        return {"device": self.device.currentData(), "dtype": self.dtype.currentData()}

    def set_automatic(self, device: str, dtype: str, why: str) -> None:
        """Say in the "automatic" choices what the engine picks on this machine (``why``: the dtype's reason)."""
        self.device.setItemText(0, f"automatic ({device} here)")
        self.dtype.setItemText(0, f"automatic ({dtype} here)")
        self.dtype.setItemData(0, f"Here: {dtype}, because {why}. On a Ray cluster each GPU worker picks for its "
                                  "own GPU.", Qt.ItemDataRole.ToolTipRole)

    def _submit(self, specs, estimates=None) -> list:
        estimates = estimates or [None] * len(specs)
        jobs = [self.session.jobs.submit_once(s, estimate=e) for s, e in zip(specs, estimates)]
        self.submitted.emit(jobs)
        return jobs

    def _taken_names(self) -> set[str]:
        names = {r.name for r in self.session.store().list_runs() if r.name}
        return names | {j.spec.name for j in self.session.jobs.active() if j.spec.name}

    def _free_name(self, name: str) -> str | None:
        """``name`` if no run or waiting job has it, else "name (2)" after the user agrees; None: cancelled."""
        taken = self._taken_names()
        if not name or name not in taken:
            return name
        n = 2
        while f"{name} ({n})" in taken:
            n += 1
        free = f"{name} ({n})"
        answer = QMessageBox.question(self, "Run name taken",
                                      f"A run named “{name}” already exists. Queue this job as “{free}”?")
        return free if answer == QMessageBox.StandardButton.Yes else None

    def _confirm_cost(self, estimates: list) -> bool:
        """Ask before a job estimated above :data:`CONFIRM_ABOVE_S`, or a large one with no speed measured."""
        total = engine.get("total_seconds")(estimates)
        if total is not None:
            if total <= CONFIRM_ABOVE_S:
                return True
            text = f"This will take about {engine.get('format_duration')(total)}.\n\n" + "\n".join(e.summary() for e in estimates[:3])
        else:
            tokens = sum(e.train_tokens for e in estimates)
            if tokens <= UNMEASURED_CONFIRM_TOKENS:
                return True
            text = ("No speed has been measured for this base model yet, so the time is unknown; the job trains "
                    f"on about {tokens:,} tokens.\n\n" + "\n".join(e.summary() for e in estimates[:3]))
        answer = QMessageBox.question(self, "A long job", text + "\n\nQueue it?")
        return answer == QMessageBox.StandardButton.Yes

    def _error(self, title: str, exc: Exception) -> None:
        QMessageBox.warning(self, title, str(exc))

    def queue_job(self) -> list:
        if not self.checked_personas():
            self._error("Cannot queue the job", UserError("no persona is checked"))
            return []
        try:
            spec = self.build()
            estimate = engine.get("estimate_job")(spec, self.session.dataset, self.session.store())
        except UserError as exc:
            self._error("Cannot queue the job", exc)
            return []
        name = self._free_name(spec.name)
        if name is None or not self._confirm_cost([estimate]):
            return []
        spec = spec.replace(name=name)
        return self._submit([spec], [estimate])

    def _sweep_jobs(self) -> tuple[list, list]:
        """The Sweep box's jobs and their estimates; a :class:`UserError` says what is missing or wrong."""
        key = self.sweep_param.currentData()
        texts = [t.strip() for t in self.sweep_values.text().split(",") if t.strip()]
        if not key or not texts:
            raise UserError("a sweep needs a parameter and at least one value")
        if self.session.dataset is None:
            raise UserError("no dataset is loaded: File ▸ Open dataset… or generate one first")
        specs = sweep_specs(self.method.currentData(), key, texts, self.form.values(),
                            name=self.run_name.text().strip(), base_model=self.base_model.currentText().strip(),
                            personas=self.selected_personas(), dataset_path=self.session.job_dataset_path(),
                            seeds=_seeds_in(self.sweep_seeds, "Sweep seeds"), **self.hardware(), **self.source_run())
        return specs, [engine.get("estimate_job")(s, self.session.dataset, self.session.store()) for s in specs]

    def update_sweep_cost(self) -> str:
        """Under the Sweep box: how many runs the typed sweep makes and about how long they take."""
        if not self.sweep_values.text().strip():
            text = ""
        elif not self.checked_personas():
            text = "Nothing to run: no persona is checked."
        else:
            try:
                specs, estimates = self._sweep_jobs()
            except UserError as exc:
                text = f"Cannot queue yet: {exc}"
            else:
                text = f"{len(specs)} run{'s' if len(specs) != 1 else ''}, {_time_of(estimates)}."
        self.sweep_cost.setText(text)
        return text

    def queue_sweep(self) -> list:
        key = self.sweep_param.currentData()
        try:
            specs, estimates = self._sweep_jobs()
        except UserError as exc:
            self._error("Cannot queue the sweep", exc)
            return []
        if not self._confirm_cost(estimates):
            return []
        taken = self._taken_names()
        # The store would add " (2)" anyway; naming it here keeps job and run alike.
        specs = [s.replace(name=self.session.store().unique_name(s.name)) if s.name in taken else s for s in specs]
        jobs = self._submit(specs, estimates)
        self.sweep_queued.emit(jobs, sweep_parameter(self.method.currentData(), key)[0])
        return jobs

    def queue_study(self) -> list:
        preset = self.preset.currentData() or "smoke"
        try:
            if self.session.dataset is None:
                raise UserError("no dataset is loaded")
            ids = self.selected_personas()  # all checked: the preset chooses its own personas
            if not self.checked_personas():
                raise UserError("no persona is checked")
            if not ids:
                from shpers_core.jobs.study import preset_personas

                ids = preset_personas(self._presets[preset], self.session.dataset.persona_ids)
            seeds = _seeds_in(self.study_seeds, "Study seeds")
            specs = engine.get("study_specs")(preset, ids, base_model=self.base_model.currentText().strip() or None,
                                              seeds=seeds, **self.hardware())
            path = self.session.job_dataset_path()
            specs = [s.replace(dataset_path=path) for s in specs]
        except UserError as exc:
            self._error("Cannot queue the study", exc)
            return []
        what = (f"{len(specs)} jobs (preset {preset}, {len(ids)} personas, {specs[0].base_model}"
                f"{', training seeds ' + ', '.join(map(str, seeds)) if seeds else ''})")
        queued = sum(any(job.spec == spec for job in self.session.jobs.active()) for spec in specs)
        if queued:  # submit_once keeps them as they are
            what += f"; {queued} of them are in the Jobs tab already and are not queued twice"
        try:
            rows = engine.get("study_progress")(self.session.store(), specs, self.session.dataset.content_hash())
        except UserError as exc:  # a row of it is running now
            self._error("Cannot queue the study", exc)
            return []
        before = engine.get("describe_progress")(rows)
        estimates = [engine.get("estimate_job")(s, self.session.dataset, self.session.store()) for s in specs]
        if not before:
            answer = QMessageBox.question(self, "Run the whole study", f"Queue {what}? {_time_of(estimates)}.")
            return self._submit_study(specs, estimates) if answer == QMessageBox.StandardButton.Yes else []
        # A stopped row resumes from its checkpoints: only its training left counts.
        left = [engine.get("left_to_run")(e, self.session.workspace.run_dir(row.run_id))[0]
                if row.state == engine.get("RESUME") else e
                for e, row in zip(estimates, rows) if row.state != engine.get("FINISHED")]
        box = QMessageBox(QMessageBox.Icon.Question, "Run the whole study",
                          f"Found in this workspace with the same settings and data: {before}.\n\n"
                          f"The study: {what}.\nContinuing it runs {len(left)} of them: {_time_of(left)}. "
                          f"Running every row again: {_time_of(estimates)}.", parent=self)
        go_on = box.addButton("Continue the study", QMessageBox.ButtonRole.AcceptRole)
        go_on.setToolTip("Keep the finished rows; stopped ones resume from their checkpoints")
        again = box.addButton("Run every row again", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(go_on)
        box.exec()
        if box.clickedButton() is again:
            return self._submit_study(specs, estimates)
        if box.clickedButton() is not go_on:
            return []
        jobs = []
        # A merge whose per-persona row is kept builds on that row, not on a run that finished since (a sweep's).
        rows = engine.get("kept_rows_built_on")(rows)
        for row, estimate in zip(rows, estimates):  # in the study's order; finished rows are left out
            if row.state == engine.get("RESUME"):
                jobs.append(self.session.jobs.resume(row.run_id, row.spec))
            elif row.state == engine.get("NEW"):
                jobs.append(self.session.jobs.submit_once(row.spec, estimate=estimate))
        link_study_jobs(jobs)
        self.submitted.emit(jobs)
        return jobs

    def _submit_study(self, specs, estimates) -> list:
        jobs = self._submit(specs, estimates)
        link_study_jobs(jobs)
        return jobs


def link_study_jobs(jobs: list) -> None:
    """Each merge or prefix job of a study builds on its pass's own row (the latest job before it of the
    method it needs), unless it names a run already (a kept row's)."""
    latest = {}
    for job in jobs:
        if not job.spec.source_run:
            needed = METHODS[job.spec.method].sources(job.spec.method_params)
            job.builds_on = next((latest[m] for m in needed if m in latest), None)
        latest[job.spec.method] = job


def _time_of(estimates: list) -> str:
    """"about 39 min" for jobs' estimates, or why there is no figure yet."""
    total = engine.get("total_seconds")(estimates)
    if total is None:
        return "no time estimate yet (no finished run of this model has measured this machine's speed)"
    return f"about {engine.get('format_duration')(total)}"


def _seeds_in(field: QLineEdit, label: str) -> list[int] | None:
    """The seeds typed in ``field`` (None: none typed); a :class:`UserError` names a bad one."""
    words = field.text().replace(",", " ").split()
    bad = [w for w in words if not (w.isascii() and w.isdigit())]
    if bad:
        raise UserError(f"{label}: {bad[0]!r} is not a whole number from 0")
    return [int(w) for w in words] or None

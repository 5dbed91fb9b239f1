"""What every view shares: the workspace, its dataset, the run store and the job queue."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from shpers_core.workspace import Workspace
from shpers_gui import engine


class Session(QObject):
    """The open workspace. Views read from it and listen to its signals; they never cache runs.

    ``dataset_changed`` follows loading or generating a dataset; ``runs_changed`` follows
    anything that adds or changes a run in the store; ``personas_selected`` carries the
    personas picked in the list or on the map, so the launcher can use them.
    """

    dataset_changed = Signal()
    runs_changed = Signal()
    personas_selected = Signal(list)
    clusters_changed = Signal()

    def __init__(self, root: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.workspace = Workspace.open(root)
        self.dataset = None
        self.dataset_path: Path | None = None
        self._splits = None
        self._store = None
        self.selected_personas: list[str] = []
        self.clusters: dict[str, int] = {}
        self.executor: tuple[str, str] = ("local", "")  # ("ray", address): the Launch tab's "Run on"
        from shpers_gui.job_queue import JobQueue

        self.jobs = JobQueue(self)

    @property
    def root(self) -> Path:
        return self.workspace.root

    def store(self):
        """The GUI thread's connection to the run store (opening it recovers interrupted runs)."""
        if self._store is None:
            from shpers_core.store import RunStore

            self._store = RunStore(self.workspace.db_path)
            from shpers_core.errors import UserError
            from shpers_core.jobs.delete import finish_pending_deletes

            try:
                finish_pending_deletes(self.workspace, self._store)  # a delete cut short by a kill
            except UserError:
                pass  # reported again by `shpers workspace clean`; the window still opens
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def set_dataset(self, dataset, path: Path) -> None:
        self.dataset = dataset
        self.dataset_path = Path(path)
        self._splits = None
        self.clusters = {}
        self.dataset_changed.emit()

    def splits(self) -> dict:
        """Per-persona train/val/test split with the engine's default seed (what jobs use)."""
        if self._splits is None and self.dataset is not None:
            self._splits = engine.get("split_dataset")(self.dataset, seed=0)
        return self._splits or {}

    def job_dataset_path(self) -> str:
        """Empty when the dataset is the workspace's own, so specs stay portable."""
        if self.dataset_path is None or self.dataset_path == self.workspace.dataset_path:
            return ""
        return str(self.dataset_path)

    def select_personas(self, ids: list[str]) -> None:
        self.selected_personas = list(ids)
        self.personas_selected.emit(list(ids))

    def set_clusters(self, clusters: dict[str, int]) -> None:
        self.clusters = dict(clusters)
        self.clusters_changed.emit()

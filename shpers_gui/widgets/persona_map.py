"""The persona map: persona embeddings in 2-D (PCA), coloured by k-means cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from shpers_core.methods.registry import get_method
from shpers_gui.workers import run_call


@dataclass
class PersonaMapData:
    ids: list[str]
    coords: np.ndarray
    labels: np.ndarray
    silhouette: float
    kind: str


def compute_persona_map(dataset, splits, kind: str, k: int, seed: int, cache_dir: Path) -> PersonaMapData:
    """Embed (or load cached embeddings of) every persona, cluster them and project to 2-D."""
    from shpers_core.methods.clustering import cluster_personas, persona_features, project_2d

    ids = dataset.persona_ids
    cache = Path(cache_dir) / f"persona-features-{dataset.content_hash()}-{kind}.npy"
    if cache.is_file():
        vectors = np.load(cache)
    else:
        from shpers_gui import engine

        embed = engine.get("EmbeddingScorer")().embed
        personas = [dataset.personas[p] for p in ids]
        train = {p: splits[p].train for p in ids} if kind == "behaviour" else None
        vectors = persona_features(personas, kind, embed, train)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    clustering = cluster_personas(vectors, k=max(1, min(k, len(ids))), seed=seed)
    return PersonaMapData(ids, project_2d(vectors), np.asarray(clustering.labels), clustering.silhouette, kind)


# Okabe-Ito's colour-blind-safe qualitative palette: neighbouring clusters must not share a hue.
_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]


def cluster_colour(c: int):
    if int(c) < len(_PALETTE):
        return pg.mkBrush(_PALETTE[int(c)])
    return pg.intColor(int(c), hues=12, values=1, maxValue=220, alpha=220)


class PersonaMap(QWidget):
    """Scatter of personas; click a point to pick it. Settings come from the Cluster LoRA method."""

    persona_clicked = Signal(str)
    computed = Signal(object)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        specs = {s.name: s for s in get_method("cluster_lora").params.specs()}
        self.features = QComboBox()
        for kind in specs["features"].choices or ("description", "behaviour"):
            self.features.addItem(kind, kind)
        self.features.setToolTip(specs["features"].help)
        self.k = QSpinBox()
        self.k.setRange(int(specs["k"].min or 1), 100)
        self.k.setValue(int(specs["k"].default))
        self.k.setToolTip(specs["k"].help)
        self._seed = int(specs["cluster_seed"].default)
        self.features.currentIndexChanged.connect(lambda _i: self.recompute())
        self.k.editingFinished.connect(self.recompute)
        again = QPushButton("Recompute")
        again.clicked.connect(self.recompute)
        self.status = QLabel("")
        top = QHBoxLayout()
        top.addWidget(QLabel("Features:"))
        top.addWidget(self.features)
        top.addWidget(QLabel("Clusters:"))
        top.addWidget(self.k)
        top.addWidget(again)
        top.addStretch(1)
        top.addWidget(self.status)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "PC 1")
        self.plot.setLabel("left", "PC 2")
        self.plot.setMenuEnabled(False)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.scatter = pg.ScatterPlotItem(size=11, pen=pg.mkPen("w", width=0.5), hoverable=True)
        self.scatter.sigClicked.connect(self._clicked)
        self.ring = pg.ScatterPlotItem(size=18, pen=pg.mkPen("k", width=2), brush=None)
        self.plot.addItem(self.scatter)
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor="k", brush=pg.mkBrush(255, 255, 255, 200))
        self.plot.addItem(self.ring)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.plot)
        self.data: PersonaMapData | None = None
        self._worker = None
        self._pending = False

    def recompute(self) -> None:
        """Compute the map in a worker; a request while one runs is done after it."""
        if self.session.dataset is None:
            return
        if self._worker is not None:
            self._pending = True
            return
        kind = self.features.currentData()
        self.status.setText(f"embedding personas ({kind})…")
        self._worker = run_call(compute_persona_map, self.session.dataset, self.session.splits(), kind,
                                self.k.value(), self._seed, self.session.root / "cache",
                                on_result=self._show, on_error=self._failed)
        self._worker.signals.done.connect(self._done)

    def _done(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self.recompute()

    def _failed(self, message: str, _tb: str) -> None:
        self.status.setText(f"map failed: {message}")

    def _show(self, data: PersonaMapData) -> None:
        if self.session.dataset is None or data.ids != self.session.dataset.persona_ids:
            return  # computed for a dataset that has since been replaced
        self.data = data
        spots = [{"pos": data.coords[i], "data": pid, "brush": cluster_colour(data.labels[i]),
                  "symbol": "o"} for i, pid in enumerate(data.ids)]
        self.scatter.setData(spots)
        self.ring.setData([])
        self.legend.clear()
        for c, n in zip(*np.unique(data.labels, return_counts=True)):
            swatch = pg.ScatterPlotItem(size=10, brush=cluster_colour(c), pen=pg.mkPen("w", width=0.5))
            self.legend.addItem(swatch, f"cluster {int(c)} ({int(n)})")
        self.plot.setTitle(f"{len(data.ids)} personas · {data.kind} features · "
                           f"k = {len(set(data.labels.tolist()))} · silhouette {data.silhouette:.3f}", color="k")
        self.status.setText(f"silhouette {data.silhouette:.3f}")
        self.computed.emit(data)
        self.session.set_clusters({pid: int(c) for pid, c in zip(data.ids, data.labels)})

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            self.persona_clicked.emit(points[0].data())

    def highlight(self, ids: list[str]) -> None:
        if self.data is None:
            return
        index = {pid: i for i, pid in enumerate(self.data.ids)}
        pos = [self.data.coords[index[p]] for p in ids if p in index]
        self.ring.setData(pos=pos)

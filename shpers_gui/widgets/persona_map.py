"""The persona map: persona embeddings in 2-D (PCA), coloured by k-means cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from shpers_core.methods.registry import get_method
from shpers_gui.workers import run_call


@dataclass
class PersonaMapData:
    ids: list[str]
    coords: np.ndarray
    labels: np.ndarray
    silhouette: float
    kind: str


# Texts embedded per call: small enough that progress moves every second or two on a CPU and
# the worker thread lets the GUI thread run between calls.
EMBED_CHUNK = 64


def feature_cache(dataset, kind: str, cache_dir: Path) -> Path:
    """Where the persona features of this dataset's content are kept (one file per feature kind)."""
    return Path(cache_dir) / f"persona-features-{dataset.content_hash()}-{kind}.npy"


def compute_persona_map(dataset, splits, kind: str, k: int, seed: int, cache_dir: Path):
    """Embed (or load cached embeddings of) every persona, cluster them and project to 2-D.

    A generator: yields ``("progress", texts embedded, texts in all)`` while embedding, then
    ``("done", PersonaMapData)``.
    """
    from shpers_core.methods.clustering import cluster_personas, persona_features, project_2d

    ids = dataset.persona_ids
    cache = feature_cache(dataset, kind, cache_dir)
    if cache.is_file():
        vectors = np.load(cache)
    else:
        from shpers_gui import engine

        scorer = engine.get("EmbeddingScorer")()
        personas = [dataset.personas[p] for p in ids]
        train = {p: splits[p].train for p in ids} if kind == "behaviour" else None
        pieces: list[tuple[int, int]] = []

        def embed(texts):
            out = []
            for start in range(0, len(texts), EMBED_CHUNK):
                out.append(scorer.embed(texts[start:start + EMBED_CHUNK]))
                pieces.append((min(start + EMBED_CHUNK, len(texts)), len(texts)))
            return np.concatenate(out) if out else np.zeros((0, scorer.dimension), dtype=np.float32)

        # persona_features calls embed once; run it lazily so progress can be yielded per chunk.
        vectors = yield from _with_progress(lambda: persona_features(personas, kind, embed, train), pieces)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    clustering = cluster_personas(vectors, k=max(1, min(k, len(ids))), seed=seed)
    yield "done", PersonaMapData(ids, project_2d(vectors), np.asarray(clustering.labels), clustering.silhouette, kind)


def _with_progress(fn, pieces: list[tuple[int, int]]):
    """Run ``fn`` on a helper thread and yield its progress ``pieces`` as they appear; return its result."""
    import threading
    import time

    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    seen = 0
    while thread.is_alive() or seen < len(pieces):
        if seen < len(pieces):
            seen += 1
            yield ("progress", *pieces[seen - 1])
        else:
            time.sleep(0.05)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# Okabe-Ito's colour-blind-safe palette without its yellow, which vanishes on a white plot, plus
# Tol's wine and olive: every colour stays visible on white and neighbours differ in hue.
_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#882255", "#999933"]
DIMMED = pg.mkBrush(200, 200, 200, 90)


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
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setFormat("%v of %m texts")
        self.progress.hide()
        top = QHBoxLayout()
        top.addWidget(QLabel("Features:"))
        top.addWidget(self.features)
        top.addWidget(QLabel("Clusters:"))
        top.addWidget(self.k)
        top.addWidget(again)
        top.addStretch(1)
        top.addWidget(self.progress)
        top.addWidget(self.status)
        # The legend sits above the plot, not inside it, so it never hides a point.
        self.legend_label = QLabel()
        self.legend_label.setWordWrap(True)
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "PC 1")
        self.plot.setLabel("left", "PC 2")
        self.plot.setMenuEnabled(False)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.scatter = pg.ScatterPlotItem(size=11, pen=pg.mkPen("#333333", width=0.6), hoverable=True)
        self.scatter.sigClicked.connect(self._clicked)
        self.ring = pg.ScatterPlotItem(size=18, pen=pg.mkPen("k", width=2), brush=None)
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.ring)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.legend_label)
        lay.addWidget(self.plot)
        self.data: PersonaMapData | None = None
        self._worker = None
        self._pending = False
        self._highlighted: list[str] = []
        self._visible: set[str] | None = None

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
                                self.k.value(), self._seed, self.session.root / "cache", stream=True,
                                on_chunk=self._chunk, on_error=self._failed)
        self._worker.signals.done.connect(self._done)

    def _chunk(self, item) -> None:
        if item[0] == "progress":
            _tag, done, total = item
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.show()
            self.status.setText(f"embedding {self.features.currentData()} texts…")
        else:
            self.progress.hide()
            self._show(item[1])

    def _done(self) -> None:
        self._worker = None
        self.progress.hide()
        if self._pending:
            self._pending = False
            self.recompute()

    def _failed(self, message: str, _tb: str) -> None:
        self.status.setText(f"map failed: {message}")

    def _show(self, data: PersonaMapData) -> None:
        if self.session.dataset is None or data.ids != self.session.dataset.persona_ids:
            return  # computed for a dataset that has since been replaced
        self.data = data
        self._draw_points()
        self.highlight(self._highlighted)  # the selection outlives a recompute
        swatches = []
        for c, n in zip(*np.unique(data.labels, return_counts=True)):
            colour = cluster_colour(c).color().name()
            swatches.append(f"<span style='color:{colour}; font-size:14pt'>●</span>&nbsp;cluster {int(c)} ({int(n)})")
        self.legend_label.setText("&nbsp;&nbsp; ".join(swatches))
        # The silhouette is beside the Recompute button; a longer title is cut on a small screen.
        self.plot.setTitle(f"{len(data.ids)} personas · {data.kind} features · k = {len(set(data.labels.tolist()))}",
                           color="k")
        self.status.setText(f"silhouette {data.silhouette:.3f}")
        self.computed.emit(data)
        self.session.set_clusters({pid: int(c) for pid, c in zip(data.ids, data.labels)})

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            self.persona_clicked.emit(points[0].data())

    def _draw_points(self) -> None:
        data = self.data
        shown = self._visible
        spots = [{"pos": data.coords[i], "data": pid, "symbol": "o",
                  "brush": cluster_colour(data.labels[i]) if shown is None or pid in shown else DIMMED,
                  "size": 11 if shown is None or pid in shown else 7}
                 for i, pid in enumerate(data.ids)]
        self.scatter.setData(spots)

    def set_visible(self, ids: list[str] | None) -> None:
        """Dim every persona not in ``ids`` (None: show all), as the list's search filter does."""
        self._visible = None if ids is None else set(ids)
        if self.data is not None:
            self._draw_points()

    def is_dimmed(self, pid: str) -> bool:
        return self._visible is not None and pid not in self._visible

    def highlight(self, ids: list[str]) -> None:
        self._highlighted = list(ids)
        if self.data is None:
            return
        index = {pid: i for i, pid in enumerate(self.data.ids)}
        pos = [self.data.coords[index[p]] for p in ids if p in index]
        self.ring.setData(pos=pos)

    def ring_count(self) -> int:
        return len(self.ring.data)

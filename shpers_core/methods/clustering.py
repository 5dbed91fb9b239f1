"""Persona clustering for the study's cluster-based methods (sections 4.3-4.5).

Every function works on L2-normalised persona vectors, so k-means, the silhouette, centrality
and nearest neighbours all see the same cosine geometry that sentence embeddings are built for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from shpers_core.data.schema import ROLES, Dialogue, Persona
from shpers_core.errors import UserError

FEATURE_KINDS = ("description", "behaviour")


class ClusteringError(UserError, ValueError):
    """Persona vectors or clustering settings that cannot be used."""


@dataclass
class Clustering:
    """The result of :func:`cluster_personas`.

    ``centroids`` live in the normalised space (they are not unit length). ``silhouette`` uses
    the cosine distance and is 0.0 where it is undefined (every persona its own cluster, or
    fewer than two non-empty clusters), which is the value singleton clusters get by definition.
    """

    labels: np.ndarray
    centroids: np.ndarray
    silhouette: float
    inertia: float
    sizes: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centroids)


def _matrix(vectors) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ClusteringError(f"persona vectors must be a non-empty [personas, features] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ClusteringError(f"persona vector {row} has a NaN or infinite value")
    return x


def _labels(labels, n: int) -> np.ndarray:
    out = np.asarray(labels).astype(int, copy=False)
    if out.shape != (n,):
        raise ClusteringError(f"expected {n} cluster labels, one per persona, got shape {out.shape}")
    return out


def normalize(vectors) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    x = _matrix(vectors)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def cluster_personas(vectors, k: int = 5, seed: int = 0) -> Clustering:
    """K-means (``n_init=10``) on the L2-normalised persona vectors."""
    x = normalize(vectors)
    n = len(x)
    if k < 2:
        raise ClusteringError(f"k={k} is too small; clustering needs at least 2 clusters")
    if k > n:
        raise ClusteringError(f"k={k} is larger than the {n} selected personas")
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    labels = km.labels_.astype(int)
    sizes = np.bincount(labels, minlength=k)
    non_empty = int((sizes > 0).sum())
    silhouette = float(silhouette_score(x, labels, metric="cosine")) if 2 <= non_empty < n else 0.0
    return Clustering(labels=labels, centroids=km.cluster_centers_, silhouette=silhouette,
                      inertia=float(km.inertia_), sizes=sizes)


def project_2d(vectors) -> np.ndarray:
    """PCA of the normalised vectors to [n, 2] for the persona map.

    Each axis is oriented so that its largest-magnitude loading is positive, so the same data
    always gives the same picture. Axes that the data cannot fill (fewer than 3 personas or
    fewer than 2 features) are zero.
    """
    x = normalize(vectors)
    n, d = x.shape
    out = np.zeros((n, 2))
    n_comp = min(2, n - 1, d)
    if n_comp < 1:
        return out
    pca = PCA(n_components=n_comp, svd_solver="full").fit(x)
    coords = pca.transform(x)
    for j, comp in enumerate(pca.components_):
        if comp[np.argmax(np.abs(comp))] < 0:
            coords[:, j] = -coords[:, j]
    out[:, :n_comp] = coords
    return out


def centrality(vectors, labels) -> np.ndarray:
    """Cosine similarity of each persona to its cluster's centroid (mean of normalised vectors)."""
    x = normalize(vectors)
    labels = _labels(labels, len(x))
    out = np.zeros(len(x))
    for c in np.unique(labels):
        members = labels == c
        centroid = x[members].mean(axis=0)
        norm = np.linalg.norm(centroid)
        if norm > 0:
            out[members] = x[members] @ centroid / norm
    return out


def top_k_in_cluster(vectors, labels, k: int) -> list[list[tuple[int, float]]]:
    """For each persona, itself then its most cosine-similar cluster mates: ``k`` in all at most.

    A persona always comes first with similarity 1.0, even when duplicates tie with it; the
    rest are ordered by similarity, ties by index.
    """
    if k < 1:
        raise ClusteringError(f"k={k} must be at least 1")
    x = normalize(vectors)
    labels = _labels(labels, len(x))
    sims = x @ x.T
    out = []
    for i in range(len(x)):
        mates = [j for j in np.flatnonzero(labels == labels[i]) if j != i]
        mates.sort(key=lambda j: (-sims[i, j], j))
        out.append([(i, 1.0)] + [(int(j), float(sims[i, j])) for j in mates[: k - 1]])
    return out


def persona_features(
    personas: Sequence[Persona],
    kind: str,
    embed: Callable[[list[str]], np.ndarray],
    dialogues_by_persona: Mapping[str, Sequence[Dialogue]] | None = None,
) -> np.ndarray:
    """One vector per persona, in the order given.

    ``description`` embeds the persona's character text (what the study clustered on).
    ``behaviour`` is the mean embedding of the persona's dialogues in ``dialogues_by_persona``,
    one text per dialogue (its user and assistant turns); pass only training dialogues, so that
    validation and test replies never shape the clusters.
    """
    if kind not in FEATURE_KINDS:
        raise ClusteringError(f"feature kind {kind!r} is not one of {', '.join(FEATURE_KINDS)}")
    if not personas:
        raise ClusteringError("no personas to embed")
    if kind == "description":
        return np.asarray(embed([p.character for p in personas]), dtype=np.float64)
    if dialogues_by_persona is None:
        raise ClusteringError("behaviour features need the personas' training dialogues")
    texts: list[str] = []
    counts: list[int] = []
    for p in personas:
        dialogues = dialogues_by_persona.get(p.persona_id) or []
        if not dialogues:
            raise ClusteringError(f"persona {p.persona_id} has no training dialogues for behaviour features")
        texts.extend("\n".join(m.text for m in d.messages if m.role in ROLES) for d in dialogues)
        counts.append(len(dialogues))
    emb = np.asarray(embed(texts), dtype=np.float64)
    bounds = np.cumsum([0] + counts)
    return np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])

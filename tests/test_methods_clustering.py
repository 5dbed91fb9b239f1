import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from shpers_core.data.schema import Dialogue, Message, Persona
from shpers_core.errors import UserError
from shpers_core.methods.clustering import (
    ClusteringError,
    centrality,
    cluster_personas,
    persona_features,
    project_2d,
    top_k_in_cluster,
)


def blobs(k=5, per=8, d=16, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    truth = np.repeat(np.arange(k), per)
    return centres[truth] + rng.normal(size=(k * per, d)) * spread, truth


def test_clustering_finds_blobs_with_a_high_silhouette():
    vecs, truth = blobs()
    result = cluster_personas(vecs, k=5, seed=0)
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert result.silhouette > 0.8
    assert sorted(result.sizes.tolist()) == [8] * 5 and result.k == 5
    assert result.centroids.shape == (5, 16) and result.inertia >= 0
    again = cluster_personas(vecs, k=5, seed=0)
    assert np.array_equal(again.labels, result.labels)


def test_clustering_noise_gives_a_low_silhouette():
    vecs = np.random.default_rng(1).normal(size=(60, 32))
    assert cluster_personas(vecs, k=5).silhouette < 0.15


def test_clustering_works_on_directions_not_lengths():
    vecs, truth = blobs(k=2, per=5)
    scaled = vecs * np.random.default_rng(2).uniform(0.1, 10, size=(10, 1))
    assert adjusted_rand_score(truth, cluster_personas(scaled, k=2).labels) == 1.0


def test_one_persona_per_cluster_has_silhouette_zero():
    vecs, _ = blobs(k=3, per=1)
    result = cluster_personas(vecs, k=3)
    assert result.silhouette == 0.0 and result.sizes.tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("k", "message"),
    [(7, "k=7 is larger than the 5 selected personas"), (1, "k=1 is too small"), (0, "k=0 is too small")],
)
def test_bad_k_says_why(k, message):
    vecs, _ = blobs(k=1, per=5)
    with pytest.raises(ClusteringError, match=message) as err:
        cluster_personas(vecs, k=k)
    assert isinstance(err.value, UserError)


def test_bad_vectors_say_why():
    with pytest.raises(ClusteringError, match="persona vector 2 has a NaN"):
        cluster_personas(np.array([[1.0, 0], [0, 1], [np.nan, 1]]), k=2)
    with pytest.raises(ClusteringError, match="shape"):
        cluster_personas(np.ones(5), k=2)
    with pytest.raises(ClusteringError, match="expected 3 cluster labels"):
        centrality(np.eye(3), [0, 1])


def test_project_2d_is_deterministic_and_sign_stable():
    vecs, truth = blobs(k=3, per=4)
    xy = project_2d(vecs)
    assert xy.shape == (12, 2)
    assert np.array_equal(xy, project_2d(vecs.copy()))
    # Mirrored data gives the mirrored picture, whatever signs the SVD happens to return.
    assert np.allclose(project_2d(-vecs), -xy)
    assert project_2d(np.ones((1, 4))).tolist() == [[0.0, 0.0]]
    assert project_2d(np.array([[1.0, 0.0], [0.0, 1.0]]))[:, 1].tolist() == [0.0, 0.0]


def test_centrality_is_cosine_to_the_cluster_centroid():
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [-3.0, 1.0]])
    cent = centrality(vecs, [0, 0, 0, 1])
    assert cent[2] == pytest.approx(1.0)
    assert cent[0] == pytest.approx(cent[1]) and cent[0] == pytest.approx(np.sqrt(0.5))
    assert cent[3] == pytest.approx(1.0)  # a singleton is its own centroid


def test_top_k_in_cluster_puts_self_first_then_nearest_mates():
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = [0, 0, 0, 0, 1]
    top = top_k_in_cluster(vecs, labels, k=3)
    assert [j for j, _ in top[1]] == [1, 0, 2]  # self before its exact duplicate
    assert [j for j, _ in top[3]] == [3, 2, 0]
    assert top[4] == [(4, 1.0)]
    with pytest.raises(ClusteringError, match="k=0"):
        top_k_in_cluster(vecs, labels, k=0)


def _dialogue(pid, *texts):
    roles = ["user", "assistant"] * len(texts)
    return Dialogue(pid, "c", tuple(Message(r, t) for r, t in zip(roles, texts)))


def fake_embed(texts):
    # Length and vowel count: enough to tell which texts were embedded, and in what order.
    return np.array([[len(t), sum(ch in "aeiou" for ch in t)] for t in texts], dtype=float)


def test_persona_features_description_and_behaviour():
    personas = [Persona("p0", "likes it warm"), Persona("p1", "early riser")]
    desc = persona_features(personas, "description", fake_embed)
    assert desc.tolist() == fake_embed(["likes it warm", "early riser"]).tolist()
    dialogues = {"p0": [_dialogue("p0", "hi", "ok"), _dialogue("p0", "heat up", "done")],
                 "p1": [_dialogue("p1", "lights", "on")]}
    beh = persona_features(personas, "behaviour", fake_embed, dialogues)
    expected_p0 = fake_embed(["hi\nok", "heat up\ndone"]).mean(axis=0)
    assert beh[0].tolist() == expected_p0.tolist()
    assert beh[1].tolist() == fake_embed(["lights\non"])[0].tolist()


def test_persona_features_errors():
    personas = [Persona("p0", "x"), Persona("p1", "y")]
    with pytest.raises(ClusteringError, match="feature kind 'style'"):
        persona_features(personas, "style", fake_embed)
    with pytest.raises(ClusteringError, match="need the personas' training dialogues"):
        persona_features(personas, "behaviour", fake_embed)
    with pytest.raises(ClusteringError, match="persona p1 has no training dialogues"):
        persona_features(personas, "behaviour", fake_embed, {"p0": [_dialogue("p0", "a", "b")]})

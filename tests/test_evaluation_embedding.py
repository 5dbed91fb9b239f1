import sys
import threading
import time
import types

import numpy as np
import pytest

import shpers_core.evaluation.embedding as embedding
from shpers_core.evaluation import EmbeddingScorer


@pytest.fixture(scope="module")
def scorer():
    return EmbeddingScorer(device="cpu")


def test_embed_is_normalised_float32(scorer):
    e = scorer.embed(["Setting bedroom lights to 30% brightness.", "Good morning!"])
    assert e.shape == (2, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert scorer.embed([]).shape == (0, 384)


def test_similarity_ranks_paraphrase_above_unrelated(scorer):
    ref = "Setting the bedroom lights to 30% brightness."
    preds = [ref, "I've dimmed the bedroom lights to 30 percent.", "The weather tomorrow is sunny."]
    same, para, other = scorer.similarity(preds, [ref] * 3)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert para > 0.7 > other
    assert all(-1.0 <= s <= 1.0 for s in (same, para, other))


def test_similarity_matches_embed_dot_product(scorer):
    preds, refs = ["Turning off the fan.", "Locking the front door."], ["Fan is off.", "Door locked."]
    e_p, e_r = scorer.embed(preds), scorer.embed(refs)
    expected = (e_p * e_r).sum(axis=1)
    assert scorer.similarity(preds, refs) == pytest.approx(expected.tolist(), abs=1e-5)


def test_empty_side_scores_zero_and_both_empty_one(scorer):
    assert scorer.similarity(["", "   ", "Okay.", ""], ["Okay.", "Okay.", "", " "]) == [0.0, 0.0, 0.0, 1.0]


def test_length_mismatch_is_an_error(scorer):
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        scorer.similarity(["a", "b"], ["a"])


def test_model_is_shared_per_device(scorer):
    assert EmbeddingScorer(device="cpu").model is scorer.model


def test_concurrent_first_use_builds_one_model(monkeypatch):
    built = []

    class SlowModel:
        def __init__(self, path, device=None, local_files_only=False):
            time.sleep(0.05)
            built.append(self)

        def eval(self):
            return self

    fake = types.ModuleType("sentence_transformers")
    fake.SentenceTransformer = SlowModel
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    monkeypatch.setattr(embedding, "_MODELS", {})
    models = []
    threads = [threading.Thread(target=lambda: models.append(EmbeddingScorer("fake").model))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(m is built[0] for m in models)

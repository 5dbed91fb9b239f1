"""Train many LoRA adapters at once on one frozen base model, each exactly as if it were alone.

Global step ``g`` stacks step ``g`` of every adapter that still has one (its own batches in its
own order, from :func:`batches_for`) into one batch, split into micro-batches to bound memory.
Each row's loss is divided by its adapter's token count for that step, known before the forward,
so the summed loss gives every adapter the gradient of its own token mean, however the rows are
split. Clipping, learning rate, AdamW state and early stopping are per adapter.

Events: a ``Step`` (series ``"train"``, mean over the adapters that stepped) per global step; if
there are at most :data:`PER_ADAPTER_EVENTS_MAX` adapters also one ``Step`` per adapter and step
(series ``"<id>/train"``) and one ``Validation`` per adapter and epoch (``"<id>/val"``). Larger
runs send only the means, so a 200-persona run does not flood the app with 200 curves per step;
their per-adapter curves are still in the result.

Checkpoints (with ``checkpoint_dir``) hold every slot's weights, the optimiser's moments and step
counts, the RNG state (dropout draws from it), the loop's position and the curves so far, written
every ``checkpoint_every`` global steps, at the end of each epoch of the longest adapter, at the end
and before a cancel. A checkpoint carries a fingerprint of what it trains (adapter ids, examples,
parameters, layers, start weights); a run resumes from it only when the fingerprint matches, and
then continues exactly as the uninterrupted run would have, after re-sending the saved curves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import get_peft_model_state_dict

from shpers_core.events import Reporter
from shpers_core.training.batching import Example
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.fit import add_lora
from shpers_core.training.multi.fingerprint import matching_checkpoint, training_fingerprint
from shpers_core.training.multi.loop import MultiFitResult, MultiLoop
from shpers_core.training.multi.lora import MultiLoraModel
from shpers_core.training.multi.packing import DEFAULT_MICRO_BATCH_TOKENS


def peft_init_state(base_model: torch.nn.Module, lora: LoraParams, seed: int) -> dict[str, torch.Tensor]:
    """The fresh adapter a lone PEFT run with ``seed`` starts from (made by PEFT itself, then unloaded)."""
    peft_model = add_lora(base_model, lora, seed)
    try:
        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    finally:
        peft_model.unload()


def train_many(
    base_model: torch.nn.Module,
    pad_id: int,
    examples_by_adapter: dict[str, list[Example]],
    lora: LoraParams,
    train: TrainParams,
    reporter: Reporter,
    *,
    val_by_adapter: dict[str, list[Example]] | None = None,
    micro_batch_rows: int | None = None,
    micro_batch_tokens: int | None = None,
    init_state: dict | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
) -> MultiFitResult:
    """Train one LoRA adapter per key of ``examples_by_adapter``; equal to separate ``fit_adapter`` runs.

    ``micro_batch_rows`` caps the rows per forward; without it ``micro_batch_tokens`` caps padded
    tokens (default per device: :data:`DEFAULT_MICRO_BATCH_TOKENS`). ``init_state``: a PEFT LoRA
    state dict every adapter starts from, or a dict from adapter id to one; default the fresh PEFT
    init for ``train.seed``. The base model is left as it was.

    With ``checkpoint_dir`` the run saves checkpoints there (see the module docstring) and resumes
    from one made by the same training; a cancel saves one before :class:`JobCancelled` leaves.
    """
    ids = list(examples_by_adapter)
    if not ids:
        raise ValueError("no adapters to train")
    for pid in ids:
        if not examples_by_adapter[pid]:
            raise ValueError(f"adapter {pid!r} has no training examples")
    checkpoint_every = checkpoint_every or train.checkpoint_every
    if checkpoint_every < 1:
        raise ValueError("checkpoint_every must be at least 1")
    flags = [(p, p.requires_grad) for p in base_model.parameters()]
    was_training = base_model.training
    multi = None
    try:
        resumed, fingerprint = None, None
        if checkpoint_dir is not None:
            fingerprint = training_fingerprint(base_model, ids, examples_by_adapter, val_by_adapter or {}, lora, train,
                                               init_state)
            resumed = matching_checkpoint(Path(checkpoint_dir), fingerprint, reporter)
        if init_state is None and resumed is None:
            init_state = peft_init_state(base_model, lora, train.seed)
        for p, _ in flags:
            p.requires_grad_(False)
        multi = MultiLoraModel(base_model, len(ids), lora)
        if resumed is None:  # else the loop loads the checkpoint's weights
            if all(pid in init_state for pid in ids) and all(isinstance(init_state[pid], dict) for pid in ids):
                for slot, pid in enumerate(ids):
                    multi.load_adapter(slot, init_state[pid])
            else:
                multi.load_all(init_state)
        if micro_batch_tokens is None:
            micro_batch_tokens = DEFAULT_MICRO_BATCH_TOKENS.get(multi.device.type, 1024)
        loop = MultiLoop(multi, pad_id, ids, examples_by_adapter, val_by_adapter or {}, train, reporter,
                         micro_batch_rows, micro_batch_tokens, checkpoint_dir=checkpoint_dir,
                         checkpoint_every=checkpoint_every, fingerprint=fingerprint)
        if resumed is not None:
            loop.restore(resumed)
        return loop.run()
    finally:
        if multi is not None:
            multi.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        base_model.train(was_training)

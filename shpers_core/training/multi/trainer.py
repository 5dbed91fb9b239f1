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

import hashlib
import json
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model_state_dict
from torch import nn

from shpers_core.events import JobCancelled, Reporter, Step, Validation
from shpers_core.training.batching import IGNORE_INDEX, Example, batches_for, collate
from shpers_core.training.checkpoint import STATE, Checkpoint, load_checkpoint, save_checkpoint
from shpers_core.training.config import LoraParams, TrainParams, learning_rate_at
from shpers_core.training.diverged import check_loss
from shpers_core.training.fit import add_lora, replay_curve
from shpers_core.training.loss import Throughput, labelled_loss_sum, padding_share
from shpers_core.training.multi.adamw import StackedAdamW, clip_grad_norm_per_adapter
from shpers_core.training.multi.lora import MultiLoraModel, _matches
from shpers_core.training.precision import LossScaler

PER_ADAPTER_EVENTS_MAX = 32
# Padded tokens per micro-batch when no row count is given. On a GPU, logits dominate memory: at
# 4096 tokens Qwen2.5's 152k vocabulary needs ~8 GB for logits, their fp32 copy and the loss's
# gradient, which with the activations of a 0.5B model fits a 24 GB GPU whatever the number of
# personas. A CPU gains nothing from big batches and loses cache: SmolLM2-135M on 2 cores trained at
# ~210 tokens/s with 512-1024-token micro-batches and ~150 with 4096.
DEFAULT_MICRO_BATCH_TOKENS = {"cuda": 4096, "cpu": 1024, "mps": 1024}


@dataclass
class MultiFitResult(Throughput):
    state_dicts: dict[str, dict[str, torch.Tensor]]
    train_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    val_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    global_steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    trainable_params: int = 0
    stopped_early: list[str] = field(default_factory=list)
    padded: int = 0
    """Padding positions the forward passes computed beside the ``tokens`` trained on."""


def peft_init_state(base_model: torch.nn.Module, lora: LoraParams, seed: int) -> dict[str, torch.Tensor]:
    """The fresh adapter a lone PEFT run with ``seed`` starts from (made by PEFT itself, then unloaded)."""
    peft_model = add_lora(base_model, lora, seed)
    try:
        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    finally:
        peft_model.unload()


def micro_batches(lengths: list[int], max_rows: int | None, max_tokens: int) -> list[list[int]]:
    """Row indices grouped longest first; each group has at most ``max_rows`` rows, or else at most
    ``max_tokens`` padded tokens (a single longer row still gets a group)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        full = len(cur) >= max_rows if max_rows else (len(cur) + 1) * lengths[cur[0] if cur else i] > max_tokens
        if cur and full:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


def _scored_tokens(e: Example) -> int:
    # token_loss_sum scores labels[1:], the next-token targets.
    return sum(1 for x in e.labels[1:] if x != IGNORE_INDEX)


def _examples_digest(groups: list[list[Example]]) -> str:
    h = hashlib.sha256()
    for examples in groups:
        h.update(b"|adapter|")
        for e in examples:
            h.update(array("q", e.input_ids).tobytes())
            h.update(b"/")
            h.update(array("q", e.labels).tobytes())
            h.update(b";")
    return h.hexdigest()


def _tensors_digest(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(str(key).encode())
        if isinstance(value, dict):
            h.update(_tensors_digest(value).encode())
        elif isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def training_fingerprint(base_model: nn.Module, ids: list[str], train_ex: dict[str, list[Example]],
                         val_ex: dict[str, list[Example]], lora: LoraParams, train: TrainParams,
                         init_state: dict | None) -> dict[str, Any]:
    """What a checkpoint of :func:`train_many` must match to be resumed (as it reads back from JSON)."""
    targets = list(lora.target_modules)
    layers = [[n, m.in_features, m.out_features] for n, m in base_model.named_modules()
              if isinstance(m, nn.Linear) and _matches(n, targets)]
    fingerprint = {
        "adapters": ids,
        "train examples": [len(train_ex[pid]) for pid in ids],
        "validation examples": [len(val_ex.get(pid) or []) for pid in ids],
        "tokens": _examples_digest([train_ex[pid] for pid in ids] + [val_ex.get(pid) or [] for pid in ids]),
        "lora": lora.to_dict(),
        # How often to checkpoint does not change what is trained.
        "training parameters": {k: v for k, v in train.to_dict().items() if k != "checkpoint_every"},
        "layers": layers,
        "start weights": "peft" if init_state is None else _tensors_digest(init_state),
    }
    return json.loads(json.dumps(fingerprint))


def checkpointed_adapters(directory: Path) -> list[str] | None:
    """The adapter ids of the :func:`train_many` checkpoint in ``directory``, if there is one."""
    try:
        state = json.loads((Path(directory) / STATE).read_text())
        return list(state["fingerprint"]["adapters"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _matching_checkpoint(directory: Path, fingerprint: dict[str, Any], reporter: Reporter) -> Checkpoint | None:
    """The checkpoint in ``directory`` if it was made by this same training, else None (and a log line)."""
    found = load_checkpoint(directory)
    if found is None:
        return None
    saved = found.state.get("fingerprint")
    if saved != fingerprint:
        saved = saved if isinstance(saved, dict) else {}
        differ = [key for key in fingerprint if saved.get(key) != fingerprint[key]] or ["format"]
        reporter.log(f"ignoring the checkpoint in {directory}: it was made for other training "
                     f"({', '.join(differ)} differ); starting from the beginning", "warning")
        return None
    return found


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
            resumed = _matching_checkpoint(Path(checkpoint_dir), fingerprint, reporter)
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
        loop = _Loop(multi, pad_id, ids, examples_by_adapter, val_by_adapter or {}, train, reporter,
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


class _Loop:
    def __init__(self, multi: MultiLoraModel, pad_id: int, ids: list[str], train_ex: dict[str, list[Example]],
                 val_ex: dict[str, list[Example]], params: TrainParams, reporter: Reporter,
                 max_rows: int | None, max_tokens: int, *, checkpoint_dir: Path | None = None,
                 checkpoint_every: int = 50, fingerprint: dict[str, Any] | None = None):
        self.multi, self.pad_id, self.ids, self.params, self.reporter = multi, pad_id, ids, params, reporter
        self.max_rows, self.max_tokens = max_rows, max_tokens
        self.model = multi.model
        self.device = multi.device
        self.train_ex = [train_ex[pid] for pid in ids]
        self.val_ex = [val_ex.get(pid) or [] for pid in ids]
        n = len(ids)
        p = params
        self.plans = [batches_for(len(ex), p.batch_size, p.num_epochs, p.seed) for ex in self.train_ex]
        self.totals = [len(plan) for plan in self.plans]
        self.warmups = [p.warmup_steps(len(ex)) for ex in self.train_ex]
        self.per_epoch = [total // p.num_epochs for total in self.totals]
        self.total_global = max(self.totals)
        self.global_per_epoch = self.total_global // p.num_epochs
        self.g = 0
        self.tokens = 0
        self.padded = 0
        self.seconds = 0.0
        self.t = [0] * n
        self.stopped = [False] * n
        self.best_val = [float("inf")] * n
        self.bad_epochs = [0] * n
        self.best_weights: list[dict | None] = [None] * n
        self.train_curves: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.val_curves: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.epoch_vals: dict[int, dict[int, float]] = {}
        # The mean curves as sent: (global step, loss, learning rate) and (global step, loss).
        self.mean_train: list[tuple[int, float, float]] = []
        self.mean_val: list[tuple[int, float]] = []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.fingerprint = fingerprint
        self.saved_at: int | None = None
        self.resumed = False
        self.verbose = n <= PER_ADAPTER_EVENTS_MAX
        self.weights = multi.parameters()
        self.optimizer = StackedAdamW(self.weights, n, betas=(0.9, 0.999), eps=1e-8, weight_decay=p.weight_decay)
        self.scaler = LossScaler.for_model(self.model)

    def run(self) -> MultiFitResult:
        n, p = len(self.ids), self.params
        self.reporter.log(f"training {n} adapters together: {self.total_global} global steps, "
                          f"{sum(self.totals)} adapter steps")
        if self.resumed:
            self.reporter.log(f"resumed train at step {self.g} of {self.total_global}")
            self._replay_curves()
        self.model.train()
        started = time.perf_counter() - self.seconds
        try:
            while True:
                active = [a for a in range(n) if self.t[a] < self.totals[a] and not self.stopped[a]]
                if not active:
                    break
                self.reporter.check()
                rows = [(a, self.train_ex[a][i]) for a in active for i in self.plans[a][self.t[a]]]
                self.tokens += sum(len(e) for _, e in rows)
                losses = self._train_step(rows, n)
                for a in active:
                    check_loss(float(losses[a]), self.t[a] + 1, f"{self.ids[a]}/train")
                lr = torch.zeros(n, dtype=torch.float64)
                for a in active:
                    lr[a] = learning_rate_at(self.t[a], self.totals[a], self.warmups[a], p.learning_rate)
                if self.scaler.unscale(self.weights):  # float16 only: an overflowed step is skipped
                    if p.max_grad_norm > 0:
                        clip_grad_norm_per_adapter(self.weights, p.max_grad_norm)
                    mask = torch.zeros(n, dtype=torch.bool)
                    mask[active] = True
                    self.optimizer.step(mask, lr)
                self.optimizer.zero_grad()
                # The loop's state first, then the events: a sink that raises leaves no half-counted step.
                self.g += 1
                for a in active:
                    self.t[a] += 1
                    self.train_curves[a].append((self.t[a], float(losses[a])))
                self.mean_train.append((self.g, float(losses[active].mean()), float(lr[active].mean())))
                if self.verbose:
                    for a in active:
                        self.reporter.emit(Step(self.t[a], self.totals[a], float(losses[a]), float(lr[a]),
                                                f"{self.ids[a]}/train"))
                elapsed = time.perf_counter() - started
                self.reporter.emit(Step(self.g, self.total_global, *self.mean_train[-1][1:], "train",
                                        self.tokens / elapsed if elapsed > 0 else 0.0))
                ending = [a for a in active if self.t[a] % self.per_epoch[a] == 0 and self.val_ex[a]]
                if ending:
                    self._validate(ending, self.g)
                self.seconds = time.perf_counter() - started
                if self.g % self.checkpoint_every == 0 or self.g % self.global_per_epoch == 0:
                    self._checkpoint()
        except JobCancelled:
            self.seconds = time.perf_counter() - started
            self._checkpoint()
            raise
        if self.saved_at != self.g:
            self._checkpoint()  # the end (early stops can end a run between epochs of the longest adapter)
        for a in range(n):
            if self.stopped[a] and self.best_weights[a] is not None:
                self.multi.load_adapter(a, self.best_weights[a])
        self.model.eval()
        return MultiFitResult(
            state_dicts={pid: self.multi.adapter_state_dict(a) for a, pid in enumerate(self.ids)},
            train_losses={pid: self.train_curves[a] for a, pid in enumerate(self.ids)},
            val_losses={pid: self.val_curves[a] for a, pid in enumerate(self.ids)},
            steps={pid: self.t[a] for a, pid in enumerate(self.ids)},
            global_steps=self.g,
            seconds=self.seconds,
            tokens=self.tokens,
            padded=self.padded,
            trainable_params=n * self.multi.trainable_params_per_adapter(),
            stopped_early=[pid for a, pid in enumerate(self.ids) if self.stopped[a]],
        )

    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        weights = {}
        for name, layer in self.multi.layers.items():
            weights[f"{name}.lora_A"] = layer.lora_A.detach().cpu()
            weights[f"{name}.lora_B"] = layer.lora_B.detach().cpu()
        best = {f"{a}:{key}": value for a, sd in enumerate(self.best_weights) if sd is not None
                for key, value in sd.items()}
        state = {
            "fingerprint": self.fingerprint,
            "global_step": self.g,
            "steps": self.t,
            "stopped": self.stopped,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "train_curves": self.train_curves,
            "val_curves": self.val_curves,
            "epoch_vals": {str(e): {str(a): v for a, v in done.items()} for e, done in self.epoch_vals.items()},
            "mean_train": self.mean_train,
            "mean_val": self.mean_val,
            "tokens": self.tokens,
            "padded": self.padded,
            "seconds": self.seconds,
        }
        save_checkpoint(self.checkpoint_dir, weights, self.optimizer.state_dict(), state, best or None, self.device)
        self.saved_at = self.g

    def restore(self, saved: Checkpoint) -> None:
        """Continue from ``saved``: weights, optimiser, RNG, position and curves."""
        with torch.no_grad():
            for name, layer in self.multi.layers.items():
                layer.lora_A.copy_(saved.weights[f"{name}.lora_A"])
                layer.lora_B.copy_(saved.weights[f"{name}.lora_B"])
        self.optimizer.load_state_dict(saved.optimizer)
        saved.restore_rng(self.device)
        s = saved.state
        self.g, self.tokens, self.seconds = s["global_step"], s["tokens"], s["seconds"]
        self.padded = s.get("padded", 0)
        self.t, self.stopped = list(s["steps"]), list(s["stopped"])
        self.best_val, self.bad_epochs = list(s["best_val"]), list(s["bad_epochs"])
        self.train_curves = [[tuple(x) for x in curve] for curve in s["train_curves"]]
        self.val_curves = [[tuple(x) for x in curve] for curve in s["val_curves"]]
        self.epoch_vals = {int(e): {int(a): v for a, v in done.items()} for e, done in s["epoch_vals"].items()}
        self.mean_train = [tuple(x) for x in s["mean_train"]]
        self.mean_val = [tuple(x) for x in s["mean_val"]]
        self.best_weights = [None] * len(self.ids)
        for key, value in (saved.best or {}).items():
            slot, name = key.split(":", 1)
            if self.best_weights[int(slot)] is None:
                self.best_weights[int(slot)] = {}
            self.best_weights[int(slot)][name] = value
        self.saved_at = self.g
        self.resumed = True

    def _replay_curves(self) -> None:
        """Send the checkpoint's curves again (see :func:`replay_curve`)."""
        if self.verbose:
            for a, pid in enumerate(self.ids):
                replay_curve(self.reporter, self.train_curves[a], self.val_curves[a], self.totals[a], self.warmups[a],
                             self.params.learning_rate, f"{pid}/train", f"{pid}/val")
        # The mean curves keep the learning rate they were sent with.
        for step, loss, lr in self.mean_train:
            self.reporter.emit(Step(step, self.total_global, loss, lr, "train"))
        for step, loss in self.mean_val:
            self.reporter.emit(Validation(step, loss, "val"))

    def _train_step(self, rows: list[tuple[int, Example]], n: int) -> torch.Tensor:
        """Forward and backward of one global step; returns each adapter's mean token loss [N]."""
        norm = torch.zeros(n, dtype=torch.float64)
        for a, e in rows:
            norm[a] += _scored_tokens(e)
        norm.clamp_(min=1)
        inv_norm = (1.0 / norm).to(self.device, torch.float32)
        loss_sum = torch.zeros(n, dtype=torch.float64)
        # Rows sorted by length share micro-batches: less padding, and each row's loss is its own.
        for group in micro_batches([len(e) for _, e in rows], self.max_rows, self.max_tokens):
            slots = torch.tensor([rows[i][0] for i in group])
            padded, _ = padding_share([len(rows[i][1]) for i in group])
            self.padded += padded
            batch = {k: v.to(self.device) for k, v in collate([rows[i][1] for i in group], self.pad_id).items()}
            with self.multi.use_slots(slots):
                s, _ = labelled_loss_sum(self.model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            dev_slots = slots.to(self.device)
            self.scaler.scaled((s * inv_norm[dev_slots]).sum()).backward()
            loss_sum.index_add_(0, slots, s.detach().to("cpu", torch.float64))
        return loss_sum / norm

    @torch.no_grad()
    def _val_losses(self, adapters: list[int]) -> dict[int, float]:
        rows = [(a, e) for a in adapters for e in self.val_ex[a]]
        n = len(self.ids)
        sums = torch.zeros(n, dtype=torch.float64)
        counts = torch.zeros(n, dtype=torch.float64)
        self.model.eval()
        try:
            for group in micro_batches([len(e) for _, e in rows], self.max_rows, self.max_tokens):
                slots = torch.tensor([rows[i][0] for i in group])
                batch = {k: v.to(self.device) for k, v in collate([rows[i][1] for i in group], self.pad_id).items()}
                with self.multi.use_slots(slots):
                    s, c = labelled_loss_sum(self.model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                sums.index_add_(0, slots, s.to("cpu", torch.float64))
                counts.index_add_(0, slots, c.to("cpu", torch.float64))
        finally:
            self.model.train()
        return {a: float(sums[a] / counts[a].clamp(min=1)) for a in adapters}

    def _validate(self, adapters: list[int], g: int) -> None:
        patience = self.params.early_stopping_patience
        for a, vloss in self._val_losses(adapters).items():
            epoch = self.t[a] // self.per_epoch[a]
            self.val_curves[a].append((self.t[a], vloss))
            self.epoch_vals.setdefault(epoch, {})[a] = vloss
            if self.verbose:
                self.reporter.emit(Validation(self.t[a], vloss, f"{self.ids[a]}/val"))
            if vloss < self.best_val[a] - 1e-6:
                self.best_val[a], self.bad_epochs[a] = vloss, 0
                if patience:
                    self.best_weights[a] = self.multi.adapter_state_dict(a)
            else:
                self.bad_epochs[a] += 1
                if patience and self.bad_epochs[a] >= patience:
                    self.stopped[a] = True
                    self.reporter.log(f"{self.ids[a]}: early stop at step {self.t[a]} "
                                      f"(best val {self.best_val[a]:.4f})")
        # The mean curve gets epoch e once every adapter that will reach it has reported it.
        for epoch in sorted(self.epoch_vals):
            done = self.epoch_vals[epoch]
            waiting = [a for a in range(len(self.ids)) if self.val_ex[a] and a not in done
                       and not (self.stopped[a] and self.t[a] // self.per_epoch[a] < epoch)]
            if waiting:
                break
            self.mean_val.append((g, sum(done.values()) / len(done)))
            self.reporter.emit(Validation(g, self.mean_val[-1][1], "val"))
            del self.epoch_vals[epoch]

"""The loop of :func:`~shpers_core.training.multi.trainer.train_many`: global steps over the stacked
adapters, per-adapter validation and early stopping, checkpoints and their restore."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shpers_core.events import JobCancelled, Reporter, Step, Validation
from shpers_core.training.batching import Example, collate, step_plan
from shpers_core.training.checkpoint import Checkpoint, save_checkpoint
from shpers_core.training.config import TrainParams, learning_rate_at
from shpers_core.training.diverged import check_loss
from shpers_core.training.fit import replay_curve
from shpers_core.training.loop_state import LoopState, Spent
from shpers_core.training.loss import Throughput, labelled_loss_sum, padding_share
from shpers_core.training.multi.adamw import StackedAdamW, clip_grad_norm_per_adapter
from shpers_core.training.multi.lora import MultiLoraModel
from shpers_core.training.multi.packing import micro_batches, scored_tokens
from shpers_core.training.precision import LossScaler
from shpers_core.training.sanity import SANITY_BATCHES, check_before_training

PER_ADAPTER_EVENTS_MAX = 32


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


class MultiLoop:
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
        self.plans = [step_plan(ex, p) for ex in self.train_ex]
        self.totals = [len(plan) for plan in self.plans]
        self.warmups = [p.warmup_steps(len(ex)) for ex in self.train_ex]
        self.per_epoch = [total // p.num_epochs for total in self.totals]
        self.total_global = max(self.totals)
        self.global_per_epoch = self.total_global // p.num_epochs
        self.g = 0
        self.spent = Spent()
        self.states = [LoopState() for _ in ids]
        self.best_weights: list[dict | None] = [None] * n
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
        else:
            self._sanity_check()
        self.model.train()
        states = self.states
        started = time.perf_counter() - self.spent.seconds
        try:
            while True:
                active = [a for a in range(n) if states[a].step < self.totals[a] and not states[a].stopped_early]
                if not active:
                    break
                self.reporter.check()
                rows = [(a, self.train_ex[a][i]) for a in active for i in self.plans[a][states[a].step]]
                self.spent.tokens += sum(len(e) for _, e in rows)
                losses = self._train_step(rows, n)
                for a in active:
                    check_loss(float(losses[a]), states[a].step + 1, f"{self.ids[a]}/train")
                lr = torch.zeros(n, dtype=torch.float64)
                for a in active:
                    lr[a] = learning_rate_at(states[a].step, self.totals[a], self.warmups[a], p.learning_rate)
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
                    states[a].record_step(float(losses[a]))
                self.mean_train.append((self.g, float(losses[active].mean()), float(lr[active].mean())))
                if self.verbose:
                    for a in active:
                        self.reporter.emit(Step(states[a].step, self.totals[a], float(losses[a]), float(lr[a]),
                                                f"{self.ids[a]}/train"))
                elapsed = time.perf_counter() - started
                self.reporter.emit(Step(self.g, self.total_global, *self.mean_train[-1][1:], "train",
                                        self.spent.tokens / elapsed if elapsed > 0 else 0.0))
                ending = [a for a in active if states[a].step % self.per_epoch[a] == 0 and self.val_ex[a]]
                if ending:
                    self._validate(ending, self.g)
                self.spent.seconds = time.perf_counter() - started
                if self.g % self.checkpoint_every == 0 or self.g % self.global_per_epoch == 0:
                    self._checkpoint()
        except JobCancelled:
            self.spent.seconds = time.perf_counter() - started
            self._checkpoint()
            raise
        if self.saved_at != self.g:
            self._checkpoint()  # the end (early stops can end a run between epochs of the longest adapter)
        for a in range(n):
            if states[a].stopped_early and self.best_weights[a] is not None:
                self.multi.load_adapter(a, self.best_weights[a])
        self.model.eval()
        return MultiFitResult(
            state_dicts={pid: self.multi.adapter_state_dict(a) for a, pid in enumerate(self.ids)},
            train_losses={pid: states[a].train_curve for a, pid in enumerate(self.ids)},
            val_losses={pid: states[a].val_curve for a, pid in enumerate(self.ids)},
            steps={pid: states[a].step for a, pid in enumerate(self.ids)},
            global_steps=self.g,
            seconds=self.spent.seconds,
            tokens=self.spent.tokens,
            padded=self.spent.padded,
            trainable_params=n * self.multi.trainable_params_per_adapter(),
            stopped_early=[pid for a, pid in enumerate(self.ids) if states[a].stopped_early],
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
            **LoopState.to_columns(self.states),
            "epoch_vals": {str(e): {str(a): v for a, v in done.items()} for e, done in self.epoch_vals.items()},
            "mean_train": self.mean_train,
            "mean_val": self.mean_val,
            **self.spent.to_dict(),
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
        self.g, self.spent, self.states = s["global_step"], Spent.from_dict(s), LoopState.from_columns(s)
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
                replay_curve(self.reporter, self.states[a].train_curve, self.states[a].val_curve, self.totals[a],
                             self.warmups[a],
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
            norm[a] += scored_tokens(e)
        norm.clamp_(min=1)
        inv_norm = (1.0 / norm).to(self.device, torch.float32)
        loss_sum = torch.zeros(n, dtype=torch.float64)
        # Rows sorted by length share micro-batches: less padding, and each row's loss is its own.
        for group in micro_batches([len(e) for _, e in rows], self.max_rows, self.max_tokens):
            slots = torch.tensor([rows[i][0] for i in group])
            padded, _ = padding_share([len(rows[i][1]) for i in group])
            self.spent.padded += padded
            batch = {k: v.to(self.device) for k, v in collate([rows[i][1] for i in group], self.pad_id).items()}
            with self.multi.use_slots(slots):
                s, _ = labelled_loss_sum(self.model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            dev_slots = slots.to(self.device)
            self.scaler.scaled((s * inv_norm[dev_slots]).sum()).backward()
            loss_sum.index_add_(0, slots, s.detach().to("cpu", torch.float64))
        return loss_sum / norm

    def _sanity_check(self) -> None:
        """The first examples' loss before any step (see :mod:`~shpers_core.training.sanity`)."""
        per_adapter = [ex if ex else self.train_ex[a] for a, ex in enumerate(self.val_ex)]
        rows = [(a, e) for a, ex in enumerate(per_adapter) for e in ex[:1]][:SANITY_BATCHES * self.params.batch_size]
        sums, counts = self._loss_sums(rows)
        loss = float(sums.sum() / counts.sum().clamp(min=1))
        self.reporter.log(check_before_training(loss, len(rows), "train"))

    @torch.no_grad()
    def _loss_sums(self, rows: list[tuple[int, Example]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed token loss and scored tokens per adapter [N] over ``rows``, in eval mode."""
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
        return sums, counts

    def _val_losses(self, adapters: list[int]) -> dict[int, float]:
        sums, counts = self._loss_sums([(a, e) for a in adapters for e in self.val_ex[a]])
        return {a: float(sums[a] / counts[a].clamp(min=1)) for a in adapters}

    def _validate(self, adapters: list[int], g: int) -> None:
        patience = self.params.early_stopping_patience
        for a, vloss in self._val_losses(adapters).items():
            state = self.states[a]
            self.epoch_vals.setdefault(state.step // self.per_epoch[a], {})[a] = vloss
            improved = state.record_validation(vloss, patience)
            if self.verbose:
                self.reporter.emit(Validation(state.step, vloss, f"{self.ids[a]}/val"))
            if improved and patience:
                self.best_weights[a] = self.multi.adapter_state_dict(a)
            if state.stopped_early:
                self.reporter.log(f"{self.ids[a]}: early stop at step {state.step} (best val {state.best_val:.4f})")
        # The mean curve gets epoch e once every adapter that will reach it has reported it.
        for epoch in sorted(self.epoch_vals):
            done = self.epoch_vals[epoch]
            waiting = [a for a in range(len(self.ids)) if self.val_ex[a] and a not in done
                       and not (self.states[a].stopped_early and self.states[a].step // self.per_epoch[a] < epoch)]
            if waiting:
                break
            self.mean_val.append((g, sum(done.values()) / len(done)))
            self.reporter.emit(Validation(g, self.mean_val[-1][1], "val"))
            del self.epoch_vals[epoch]

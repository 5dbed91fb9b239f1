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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from peft import get_peft_model_state_dict

from shpers_core.events import Reporter, Step, Validation
from shpers_core.training.batching import IGNORE_INDEX, Example, batches_for, collate, token_loss_sum
from shpers_core.training.config import LoraParams, TrainParams, learning_rate_at
from shpers_core.training.multi.adamw import StackedAdamW, clip_grad_norm_per_adapter
from shpers_core.training.multi.lora import MultiLoraModel

PER_ADAPTER_EVENTS_MAX = 32
# Padded tokens per micro-batch when no row count is given. On a GPU, logits dominate memory: at
# 4096 tokens Qwen2.5's 152k vocabulary needs ~8 GB for logits, their fp32 copy and the loss's
# gradient, which with the activations of a 0.5B model fits a 24 GB GPU whatever the number of
# personas. A CPU gains nothing from big batches and loses cache: SmolLM2-135M on 2 cores trained at
# ~210 tokens/s with 512-1024-token micro-batches and ~150 with 4096.
DEFAULT_MICRO_BATCH_TOKENS = {"cuda": 4096, "cpu": 1024, "mps": 1024}


@dataclass
class MultiFitResult:
    state_dicts: dict[str, dict[str, torch.Tensor]]
    train_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    val_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    global_steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    trainable_params: int = 0
    stopped_early: list[str] = field(default_factory=list)


def peft_init_state(base_model: torch.nn.Module, lora: LoraParams, seed: int) -> dict[str, torch.Tensor]:
    """The fresh adapter a lone PEFT run with ``seed`` starts from (made by PEFT itself, then unloaded)."""
    from shpers_core.training.fit import add_lora

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
) -> MultiFitResult:
    """Train one LoRA adapter per key of ``examples_by_adapter``; equal to separate ``fit_adapter`` runs.

    ``micro_batch_rows`` caps the rows per forward; without it ``micro_batch_tokens`` caps padded
    tokens (default per device: :data:`DEFAULT_MICRO_BATCH_TOKENS`). ``init_state``: a PEFT LoRA
    state dict every adapter starts from, or a dict from adapter id to one; default the fresh PEFT
    init for ``train.seed``. The base model is left as it was.
    """
    ids = list(examples_by_adapter)
    if not ids:
        raise ValueError("no adapters to train")
    for pid in ids:
        if not examples_by_adapter[pid]:
            raise ValueError(f"adapter {pid!r} has no training examples")
    flags = [(p, p.requires_grad) for p in base_model.parameters()]
    was_training = base_model.training
    multi = None
    try:
        if init_state is None:
            init_state = peft_init_state(base_model, lora, train.seed)
        for p, _ in flags:
            p.requires_grad_(False)
        multi = MultiLoraModel(base_model, len(ids), lora)
        if all(pid in init_state for pid in ids) and all(isinstance(init_state[pid], dict) for pid in ids):
            for slot, pid in enumerate(ids):
                multi.load_adapter(slot, init_state[pid])
        else:
            multi.load_all(init_state)
        if micro_batch_tokens is None:
            micro_batch_tokens = DEFAULT_MICRO_BATCH_TOKENS.get(multi.device.type, 1024)
        loop = _Loop(multi, pad_id, ids, examples_by_adapter, val_by_adapter or {}, train, reporter,
                     micro_batch_rows, micro_batch_tokens)
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
                 max_rows: int | None, max_tokens: int):
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
        self.t = [0] * n
        self.stopped = [False] * n
        self.best_val = [float("inf")] * n
        self.bad_epochs = [0] * n
        self.best_weights: list[dict | None] = [None] * n
        self.train_curves: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.val_curves: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.epoch_vals: dict[int, dict[int, float]] = {}
        self.verbose = n <= PER_ADAPTER_EVENTS_MAX
        self.weights = multi.parameters()
        self.optimizer = StackedAdamW(self.weights, n, betas=(0.9, 0.999), eps=1e-8, weight_decay=p.weight_decay)

    def run(self) -> MultiFitResult:
        n, p = len(self.ids), self.params
        total_global = max(self.totals)
        self.reporter.log(f"training {n} adapters together: {total_global} global steps, "
                          f"{sum(self.totals)} adapter steps")
        self.model.train()
        started = time.perf_counter()
        tokens, g = 0, 0
        while True:
            active = [a for a in range(n) if self.t[a] < self.totals[a] and not self.stopped[a]]
            if not active:
                break
            self.reporter.check()
            rows = [(a, self.train_ex[a][i]) for a in active for i in self.plans[a][self.t[a]]]
            tokens += sum(len(e) for _, e in rows)
            losses = self._train_step(rows, n)
            if p.max_grad_norm > 0:
                clip_grad_norm_per_adapter(self.weights, p.max_grad_norm)
            lr = torch.zeros(n, dtype=torch.float64)
            for a in active:
                lr[a] = learning_rate_at(self.t[a], self.totals[a], self.warmups[a], p.learning_rate)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[active] = True
            self.optimizer.step(mask, lr)
            self.optimizer.zero_grad()
            g += 1
            for a in active:
                self.t[a] += 1
                self.train_curves[a].append((self.t[a], float(losses[a])))
                if self.verbose:
                    self.reporter.emit(Step(self.t[a], self.totals[a], float(losses[a]), float(lr[a]),
                                            f"{self.ids[a]}/train"))
            self.reporter.emit(Step(g, total_global, float(losses[active].mean()), float(lr[active].mean()), "train"))
            ending = [a for a in active if self.t[a] % self.per_epoch[a] == 0 and self.val_ex[a]]
            if ending:
                self._validate(ending, g)
        for a in range(n):
            if self.stopped[a] and self.best_weights[a] is not None:
                self.multi.load_adapter(a, self.best_weights[a])
        self.model.eval()
        return MultiFitResult(
            state_dicts={pid: self.multi.adapter_state_dict(a) for a, pid in enumerate(self.ids)},
            train_losses={pid: self.train_curves[a] for a, pid in enumerate(self.ids)},
            val_losses={pid: self.val_curves[a] for a, pid in enumerate(self.ids)},
            steps={pid: self.t[a] for a, pid in enumerate(self.ids)},
            global_steps=g,
            seconds=time.perf_counter() - started,
            tokens=tokens,
            trainable_params=n * self.multi.trainable_params_per_adapter(),
            stopped_early=[pid for a, pid in enumerate(self.ids) if self.stopped[a]],
        )

    def _train_step(self, rows: list[tuple[int, Example]], n: int) -> torch.Tensor:
        """Forward and backward of one global step; returns each adapter's mean token loss [N]."""
        norm = torch.zeros(n, dtype=torch.float64)
        for a, e in rows:
            norm[a] += _scored_tokens(e)
        norm.clamp_(min=1)
        inv_norm = (1.0 / norm).to(self.device, torch.float32)
        loss_sum = torch.zeros(n, dtype=torch.float64)
        for group in micro_batches([len(e) for _, e in rows], self.max_rows, self.max_tokens):
            slots = torch.tensor([rows[i][0] for i in group])
            batch = {k: v.to(self.device) for k, v in collate([rows[i][1] for i in group], self.pad_id).items()}
            with self.multi.use_slots(slots):
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            s, _ = token_loss_sum(logits, batch["labels"])
            dev_slots = slots.to(self.device)
            (s * inv_norm[dev_slots]).sum().backward()
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
                    logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                s, c = token_loss_sum(logits, batch["labels"])
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
            self.reporter.emit(Validation(g, sum(done.values()) / len(done), "val"))
            del self.epoch_vals[epoch]

"""Train one PEFT adapter: AdamW with warm-up, validation each epoch, early stopping,
checkpoints to resume from, and a cancel check every step.

The batch order, loss and optimiser follow the contract in ``batching.py`` so that the batched
multi-adapter trainer gives the same adapters as this one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

from shpers_core.events import JobCancelled, Reporter, Step, Validation
from shpers_core.training.batching import Example, collate, step_plan
from shpers_core.training.checkpoint import load_checkpoint, save_checkpoint
from shpers_core.training.config import LoraParams, TrainParams, learning_rate_at
from shpers_core.training.diverged import check_loss
from shpers_core.training.dropout import use_in_peft
from shpers_core.training.loop_state import LoopState, Spent
from shpers_core.training.loss import Throughput, labelled_loss_sum, padding_share
from shpers_core.training.precision import LossScaler
from shpers_core.training.sanity import SANITY_BATCHES, check_before_training


@dataclass
class FitResult(Throughput):
    state_dict: dict[str, torch.Tensor]
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    stopped_early: bool = False
    tokens: int = 0
    """Real (unpadded) tokens trained on."""
    padded: int = 0
    """Padding positions the forward passes computed beside them."""


class DataParallel(Protocol):
    """How one of several processes takes part in a data-parallel :func:`fit` (None there: the only one).

    Each process takes its share of every global batch; the loss is normalised by the labelled
    tokens of the whole batch and the gradients are summed over the processes, so each process
    steps with the gradient one process would have computed on the whole batch. An interface:
    ``TorchDataParallel`` implements the collectives (``shpers_core.distributed.data_parallel``).
    """

    def share(self, rows: list) -> list:
        """This process's rows of a global batch (possibly none)."""
        ...

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the processes."""
        ...

    def sum_gradients(self, weights: list[torch.nn.Parameter]) -> None:
        """Replace each weight's gradient (zero where this process had no rows) by its sum over the processes."""
        ...

    def any_stop(self, stop: bool) -> bool:
        """Whether any process was asked to stop: all stop at the same step, or the collectives would hang."""
        ...


def lora_config(lora: LoraParams) -> LoraConfig:
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def validation_loss(model: torch.nn.Module, pad_id: int, examples: list[Example], batch_size: int) -> float:
    """Mean next-token loss over the assistant tokens of ``examples``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
        s, c = labelled_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        total += float(s.sum())
        count += int(c.sum())
    model.train(was_training)
    return total / max(1, count)


def replay_curve(reporter: Reporter, train_curve, val_curve, total: int, warmup: int, peak_lr: float,
                 series: str, val_series: str) -> None:
    """Send a resumed run's saved curve points again.

    Points sent after a crashed process last wrote its events are lost with it; the checkpoint has
    the whole curve up to here (a step sent twice replaces the stored one).
    """
    for step, loss in train_curve:
        reporter.emit(Step(step, total, loss, learning_rate_at(step - 1, total, warmup, peak_lr), series))
    for step, loss in val_curve:
        reporter.emit(Validation(step, loss, val_series))


def fit(
    model: torch.nn.Module,
    pad_id: int,
    train: list[Example],
    val: list[Example] | None,
    params: TrainParams,
    reporter: Reporter,
    *,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    series: str = "train",
    data_parallel: DataParallel | None = None,
) -> FitResult:
    """Train the parameters of ``model`` that require grad; resumes from ``checkpoint_dir`` if it holds one.

    Checkpoints every ``checkpoint_every`` steps (default ``params.checkpoint_every``) and each epoch.
    With ``data_parallel`` this process trains its share of each batch in step with the others.
    """
    dp = data_parallel
    if not train:
        raise ValueError("no training examples")
    every = checkpoint_every or params.checkpoint_every
    device = next(model.parameters()).device
    weights = trainable_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(weights, lr=params.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=params.weight_decay)
    plan = step_plan(train, params)
    total, warmup = len(plan), params.warmup_steps(len(train))
    steps_per_epoch = len(plan) // params.num_epochs
    val_series = series.replace("train", "val") if "train" in series else f"{series}/val"

    state, spent = LoopState(), Spent()
    best_weights: dict[str, torch.Tensor] | None = None
    if checkpoint_dir is not None:
        resumed = load_checkpoint(checkpoint_dir)
        if resumed is not None:
            with torch.no_grad():
                for n, p in zip(names, weights):
                    p.copy_(resumed.weights[n].to(p.device, p.dtype))
            optimizer.load_state_dict(resumed.optimizer)
            resumed.restore_rng(device)
            state, spent = LoopState.from_dict(resumed.state), Spent.from_dict(resumed.state)
            best_weights = resumed.best
            reporter.log(f"resumed {series} at step {state.step} of {total}")
            replay_curve(reporter, state.train_curve, state.val_curve, total, warmup, params.learning_rate,
                         series, val_series)

    def checkpoint() -> None:
        if checkpoint_dir is not None:
            current = {n: p.detach().cpu().clone() for n, p in zip(names, weights)}
            save_checkpoint(checkpoint_dir, current, optimizer.state_dict(), state.to_dict() | spent.to_dict(),
                            best_weights, device)

    scaler = LossScaler.for_model(model)
    if state.step == 0:
        first = (val or train)[:SANITY_BATCHES * params.batch_size]
        reporter.log(check_before_training(validation_loss(model, pad_id, first, params.batch_size), len(first),
                                           series))
    model.train()
    started = time.perf_counter() - spent.seconds
    try:
        while state.step < total and not state.stopped_early:
            if dp is None:
                reporter.check()
            elif dp.any_stop(reporter.should_stop()):
                raise JobCancelled()
            t = state.step
            rows = [train[i] for i in plan[t]]
            if dp is not None:
                rows = dp.share(rows)
            padded, real = padding_share([len(e) for e in rows])
            spent.padded += padded
            spent.tokens += real
            if dp is None:
                batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
                s, c = labelled_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                loss = s.sum() / c.sum().clamp(min=1)
                check_loss(loss.item(), t + 1, series)
                scaler.scaled(loss).backward()
            else:
                loss = _data_parallel_backward(dp, model, pad_id, rows, device, scaler, weights)
                check_loss(loss.item(), t + 1, series)
            lr = learning_rate_at(t, total, warmup, params.learning_rate)
            if scaler.unscale(weights):  # float16 only: a step whose gradients overflowed is skipped
                if params.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(weights, params.max_grad_norm)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.record_step(loss.item())
            elapsed = time.perf_counter() - started
            reporter.emit(Step(state.step, total, state.train_curve[-1][1], lr, series,
                               spent.tokens / elapsed if elapsed > 0 else 0.0))
            if state.step % steps_per_epoch == 0 and val:
                vloss = validation_loss(model, pad_id, val, params.batch_size)
                patience = params.early_stopping_patience
                improved = state.record_validation(vloss, patience)
                reporter.emit(Validation(state.step, vloss, val_series))
                if improved and patience:
                    best_weights = {n: p.detach().cpu().clone() for n, p in zip(names, weights)}
                if state.stopped_early:
                    reporter.log(f"{series}: early stop at step {state.step} (best val {state.best_val:.4f})")
            spent.seconds = time.perf_counter() - started
            if state.step % every == 0 or state.step % steps_per_epoch == 0:
                checkpoint()
    except JobCancelled:
        spent.seconds = time.perf_counter() - started
        checkpoint()
        raise
    if best_weights is not None and state.stopped_early:
        with torch.no_grad():
            for n, p in zip(names, weights):
                p.copy_(best_weights[n].to(p.device, p.dtype))
    model.eval()
    return FitResult(
        state_dict={},
        train_curve=list(state.train_curve),
        val_curve=list(state.val_curve),
        steps=state.step,
        seconds=spent.seconds,
        trainable_params=sum(p.numel() for p in weights),
        stopped_early=state.stopped_early,
        tokens=spent.tokens,
        padded=spent.padded,
    )


def _data_parallel_backward(dp: DataParallel, model, pad_id: int, rows: list, device, scaler,
                            weights: list[torch.nn.Parameter]) -> torch.Tensor:
    """Backward of this process's rows over the whole batch's token count, gradients summed; the batch's loss."""
    if rows:
        batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
        s, c = labelled_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        s, c = s.sum(), c.sum()
    else:  # a last batch smaller than the number of processes
        s = c = torch.zeros((), device=device)
    count = dp.all_sum(c.detach().float()).clamp(min=1)
    local = s / count
    if rows:
        scaler.scaled(local).backward()
    dp.sum_gradients(weights)
    return dp.all_sum(local.detach().float())


def add_lora(model: torch.nn.Module, lora: LoraParams, seed: int, adapter_name: str = "default") -> PeftModel:
    """Wrap ``model`` with a freshly initialised LoRA adapter; the init depends only on ``seed``."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, lora_config(lora), adapter_name=adapter_name)
    use_in_peft(peft_model)
    return peft_model


def fit_adapter(
    model: torch.nn.Module,
    pad_id: int,
    train: list[Example],
    val: list[Example] | None,
    lora: LoraParams,
    train_params: TrainParams,
    reporter: Reporter,
    *,
    checkpoint_dir: Path | None = None,
    series: str = "train",
    data_parallel: DataParallel | None = None,
) -> FitResult:
    """Train one LoRA adapter on a frozen base model and return its PEFT state dict.

    The base model is left as it was (the adapter is unloaded before returning).
    """
    peft_model = add_lora(model, lora, train_params.seed)
    try:
        result = fit(peft_model, pad_id, train, val, train_params, reporter,
                     checkpoint_dir=checkpoint_dir, series=series, data_parallel=data_parallel)
        result.state_dict = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    finally:
        peft_model.unload()
    return result


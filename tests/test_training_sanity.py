"""A broken set-up fails before the first training step, with a message; a sane one says it checked."""

import pytest
import synthetic
import torch

from shpers_core.events import CollectingReporter
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.fit import fit_adapter
from shpers_core.training.multi import train_many
from shpers_core.training.sanity import SetupBroken

LORA = LoraParams(rank=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
TRAIN = TrainParams(num_epochs=1, batch_size=2, warmup_ratio=0.0)


def broken_model():
    model = synthetic.tiny_model(hidden=32, vocab=64)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))  # what a bad conversion or an overflowing dtype gives
    return model


def data(n=6):
    return synthetic.examples(n, 0, vocab=64, max_length=16)


def test_a_model_that_gives_nan_fails_before_any_step():
    reporter = CollectingReporter()
    with pytest.raises(SetupBroken, match="before any training the loss on the first 2 examples is nan"):
        fit_adapter(broken_model(), 0, data(), data(2), LORA, TRAIN, reporter)
    assert reporter.of_kind("step") == []


def test_the_batched_trainer_checks_before_its_first_step_too():
    reporter = CollectingReporter()
    with pytest.raises(SetupBroken, match="train: before any training"):
        train_many(broken_model(), 0, {"a": data(), "b": data()}, LORA, TRAIN, reporter)
    assert reporter.of_kind("step") == []


def test_a_sane_start_is_logged_and_changes_nothing_trained():
    model = synthetic.tiny_model(hidden=32, vocab=64)
    reporter = CollectingReporter()
    result = fit_adapter(model, 0, data(), data(2), LORA, TRAIN, reporter)
    logs = [e.message for e in reporter.of_kind("log")]
    assert any("sanity check before training, loss" in m and "on 2 examples" in m for m in logs)
    assert len(result.train_curve) == 3

import pytest
import synthetic
import torch
from peft import get_peft_model

from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.fit import fit_adapter, lora_config


def tiny_model(dtype=torch.float32):
    return synthetic.tiny_model(hidden=32, vocab=64, dtype=dtype)


def examples(n, seed=0):
    return synthetic.examples(n, seed, vocab=64, max_length=16)


LORA = LoraParams(lora_dropout=0.0)
TRAIN = TrainParams(num_epochs=3, batch_size=2, learning_rate=5e-3)


def test_training_lowers_loss_and_reports_every_step():
    rep = CollectingReporter()
    result = fit_adapter(tiny_model(), 0, examples(6), examples(2, 1), LORA, TRAIN, rep)
    steps = rep.of_kind("step")
    assert len(steps) == result.steps == 9
    assert len(rep.of_kind("validation")) == 3
    assert result.train_curve[-1][1] < result.train_curve[0][1]
    assert any("lora_B" in k for k in result.state_dict)
    assert result.trainable_params > 0


def test_base_model_is_unchanged_after_fitting():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_adapter(model, 0, examples(4), None, LORA, TRAIN, CollectingReporter())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cancelled_run_resumes_to_the_same_adapter(tmp_path):
    lora = LoraParams(lora_dropout=0.1)  # dropout on: resume must restore the RNG too
    full_steps = CollectingReporter()
    full = fit_adapter(tiny_model(), 0, examples(6), examples(2, 1), lora, TRAIN, full_steps)

    calls = {"n": 0}

    def stop_after_four():
        calls["n"] += 1
        return calls["n"] > 4

    with pytest.raises(JobCancelled):
        fit_adapter(tiny_model(), 0, examples(6), examples(2, 1), lora, TRAIN,
                    CollectingReporter(should_stop=stop_after_four), checkpoint_dir=tmp_path / "ckpt")
    rep = CollectingReporter()
    resumed = fit_adapter(tiny_model(), 0, examples(6), examples(2, 1), lora, TRAIN, rep,
                          checkpoint_dir=tmp_path / "ckpt")
    # The resumed run continues at step 5, after replaying the checkpoint's curve for the store.
    assert any("at step 4 of" in e.message for e in rep.of_kind("log"))
    assert [e.step for e in rep.of_kind("step")] == [e.step for e in full_steps.of_kind("step")]
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value)
    assert [v for _, v in resumed.val_curve] == pytest.approx([v for _, v in full.val_curve])


def test_early_stopping_stops_and_keeps_best():
    params = TrainParams(num_epochs=30, batch_size=2, learning_rate=0.5, early_stopping_patience=1)
    rep = CollectingReporter()
    result = fit_adapter(tiny_model(), 0, examples(4), examples(2, 1), LORA, params, rep)
    assert result.stopped_early
    assert result.steps < 60


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["plain", "lora", "prompt", "prefix"])
def test_label_only_head_equals_full_logits_loss(kind, dtype):
    """The loss from the head on labelled positions only equals the loss on the model's full logits."""
    from peft import PrefixTuningConfig, PromptTuningConfig

    from shpers_core.training.batching import collate, token_loss_sum
    from shpers_core.training.loss import labelled_loss_sum

    model = tiny_model(dtype=dtype)
    config = {"lora": lora_config(LoraParams(rank=4)),
              "prompt": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
              "prefix": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)}.get(kind)
    if config is not None:
        torch.manual_seed(0)
        model = get_peft_model(model, config)
    batch = collate(examples(4, 1), 0)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full_sum, full_count = token_loss_sum(logits[:, logits.size(1) - batch["labels"].size(1):], batch["labels"])
    s, c = labelled_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert torch.equal(c, full_count) and s.dtype == torch.float32
    torch.testing.assert_close(s, full_sum, atol=1e-4, rtol=1e-5)


def test_steps_report_tokens_per_second_and_padding():
    rep = CollectingReporter()
    train = examples(5, 2)
    result = fit_adapter(tiny_model(), 0, train, None, LORA, TRAIN, rep)
    assert result.tokens == TRAIN.num_epochs * sum(len(e) for e in train)
    assert 0 < result.padding_share < 1 and result.tokens_per_second > 0
    assert all(step.tokens_per_s > 0 for step in rep.of_kind("step"))

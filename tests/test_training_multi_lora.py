import json

import pytest
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict
from synthetic import VOCAB, examples, tiny_model

from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.training.batching import collate, step_plan, token_loss_sum
from shpers_core.training.config import LoraParams, TrainParams, learning_rate_at
from shpers_core.training.fit import lora_config
from shpers_core.training.multi import MultiLoraModel, micro_batches, train_many

LORA = LoraParams(lora_dropout=0.0)
TRAIN = TrainParams(num_epochs=2, batch_size=2, learning_rate=5e-3)
DATA = {"a": examples(5, 1, "a"), "b": examples(2, 2, "b"), "c": examples(4, 3, "c")}


def reference_fit(model, pad_id, train, lora, params):
    """A lone PEFT run written out from the training contract."""
    torch.manual_seed(params.seed)
    peft_model = get_peft_model(model, lora_config(lora))
    weights = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(weights, lr=params.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=params.weight_decay)
    plan = step_plan(train, params)
    total, warmup = params.total_steps(len(train)), params.warmup_steps(len(train))
    peft_model.train()
    for t, idx in enumerate(plan):
        batch = collate([train[i] for i in idx], pad_id)
        logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s, c = token_loss_sum(logits, batch["labels"])
        (s.sum() / c.sum().clamp(min=1)).backward()
        if params.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(weights, params.max_grad_norm)
        for group in opt.param_groups:
            group["lr"] = learning_rate_at(t, total, warmup, params.learning_rate)
        opt.step()
        opt.zero_grad()
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    peft_model.unload()
    return state


def assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


# Tolerances: float32 agrees to rounding. A bf16 base rounds activations to 8 bits of mantissa, so the
# same arithmetic in another order (stacked bmm vs PEFT's Linear) differs by rounding, and AdamW turns a
# rounding-sized difference in a near-zero gradient into a step of +-lr either way: a few elements may
# differ by up to lr per step taken, the rest agree to 1e-3.
DTYPES = [pytest.param(torch.float32, 1e-5, id="fp32"), pytest.param(torch.bfloat16, 2e-3, id="bf16")]


def assert_same_adamw_bf16(a, b, lr, steps):
    assert a.keys() == b.keys()
    for k in a:
        diff = (a[k] - b[k]).abs()
        assert float((diff > 1e-3).float().mean()) <= 0.01, k
        assert float(diff.max()) <= 2 * lr * steps + 1e-6, k


@pytest.mark.parametrize("dtype,atol", DTYPES)
@pytest.mark.parametrize("clip", [0.6, 0.0])  # 0.6 clips some adapters, not all
def test_batched_training_equals_separate_peft_runs(clip, dtype, atol):
    """The batched trainer (label-only head) equals lone PEFT runs computing the full logits."""
    params = TRAIN.replace(max_grad_norm=clip)
    rep = CollectingReporter()
    result = train_many(tiny_model(dtype=dtype), 0, DATA, LORA, params, rep)
    for pid, train in DATA.items():
        ref = reference_fit(tiny_model(dtype=dtype), 0, train, LORA, params)
        assert all(v.dtype == torch.float32 for v in ref.values())
        if dtype == torch.float32:
            assert_same(result.state_dicts[pid], ref, atol=atol)
        else:
            assert_same_adamw_bf16(result.state_dicts[pid], ref, params.learning_rate, result.steps[pid])
        assert result.steps[pid] == params.total_steps(len(train))
    # Different example counts: the global run lasts as long as the longest adapter.
    assert result.global_steps == max(result.steps.values()) == 6
    assert len([e for e in rep.of_kind("step") if e.series == "train"]) == 6
    assert len([e for e in rep.of_kind("step") if e.series == "b/train"]) == 2


def test_micro_batching_changes_nothing():
    whole = train_many(tiny_model(), 0, DATA, LORA, TRAIN, CollectingReporter())
    for rows in (1, 3):
        split = train_many(tiny_model(), 0, DATA, LORA, TRAIN, CollectingReporter(), micro_batch_rows=rows)
        for pid in DATA:
            assert_same(split.state_dicts[pid], whole.state_dicts[pid])
    by_tokens = train_many(tiny_model(), 0, DATA, LORA, TRAIN, CollectingReporter(), micro_batch_tokens=40)
    for pid in DATA:
        assert_same(by_tokens.state_dicts[pid], whole.state_dicts[pid])


def test_micro_batches_respect_limits():
    lengths = [5, 30, 12, 12, 7]
    assert micro_batches(lengths, 2, 0) == [[1, 2], [3, 4], [0]]
    groups = micro_batches(lengths, None, 40)
    assert sorted(i for g in groups for i in g) == list(range(5))
    assert all(len(g) * max(lengths[i] for i in g) <= 40 or len(g) == 1 for g in groups)


def test_absent_adapter_is_untouched():
    """An adapter with no batch in a global step takes no step at all, not even weight decay."""
    params = TRAIN.replace(num_epochs=1, weight_decay=0.5)
    init = train_many(tiny_model(), 0, {"x": DATA["a"]}, LORA, params.replace(num_epochs=1, batch_size=1),
                      CollectingReporter()).state_dicts["x"]
    short, long = examples(2, 4), examples(8, 5)
    result = train_many(tiny_model(), 0, {"short": short, "long": long}, LORA, params, CollectingReporter(),
                        init_state={"short": init, "long": init})
    alone = train_many(tiny_model(), 0, {"short": short}, LORA, params, CollectingReporter(), init_state=init)
    assert result.steps == {"short": 1, "long": 4}
    assert_same(result.state_dicts["short"], alone.state_dicts["short"], atol=1e-6)


def test_validation_events_and_early_stop():
    val = {pid: examples(2, 10 + i, pid) for i, pid in enumerate(DATA)}
    rep = CollectingReporter()
    params = TRAIN.replace(num_epochs=3)
    result = train_many(tiny_model(), 0, DATA, LORA, params, rep, val_by_adapter=val)
    vals = rep.of_kind("validation")
    assert len([v for v in vals if v.series == "val"]) == 3
    assert len([v for v in vals if v.series == "a/val"]) == 3
    assert all(len(result.val_losses[pid]) == 3 for pid in DATA)
    assert result.trainable_params > 0 and result.tokens > 0

    stop = TrainParams(num_epochs=30, batch_size=2, learning_rate=0.5, early_stopping_patience=1)
    result = train_many(tiny_model(), 0, DATA, LORA, stop, CollectingReporter(), val_by_adapter=val)
    assert result.stopped_early
    assert all(result.steps[pid] < stop.total_steps(len(DATA[pid])) for pid in result.stopped_early)


def test_cancel_and_base_model_restored():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def stop_after_two():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(JobCancelled):
        train_many(model, 0, DATA, LORA, TRAIN, CollectingReporter(should_stop=stop_after_two))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("dtype,atol", DTYPES)
def test_mixed_slots_match_peft_and_round_trip(tmp_path, dtype, atol):
    model = tiny_model(dtype=dtype)
    ids = torch.randint(1, VOCAB, (3, 9), generator=torch.Generator().manual_seed(7))
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        pm = get_peft_model(tiny_model(dtype=dtype), lora_config(LORA))
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        adapters.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()})
        adapters[-1]["_logits"] = pm(input_ids=ids).logits.detach()

    base_logits = model(input_ids=ids).logits.detach()
    multi = MultiLoraModel(model, 2, LORA)
    for slot, sd in enumerate(adapters):
        multi.load_adapter(slot, {k: v for k, v in sd.items() if k != "_logits"})
    with torch.no_grad(), multi.use_slots([1, -1, 0]):
        mixed = model(input_ids=ids).logits
    tol = dict(atol=atol, rtol=1e-4 if dtype == torch.float32 else 1e-2)
    torch.testing.assert_close(mixed[0], adapters[1]["_logits"][0], **tol)
    torch.testing.assert_close(mixed[1], base_logits[1], **tol)
    torch.testing.assert_close(mixed[2], adapters[0]["_logits"][2], **tol)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base_logits)  # no slots set: base model
    # One new token per row, as in decoding, takes the path through all adapters at once.
    with torch.no_grad(), multi.use_slots([1, -1, 0]):
        first = model(input_ids=ids[:, :1]).logits
    torch.testing.assert_close(first[0], adapters[1]["_logits"][0, :1], **tol)
    torch.testing.assert_close(first[1], base_logits[1, :1], **tol)
    torch.testing.assert_close(first[2], adapters[0]["_logits"][2, :1], **tol)
    multi.load_adapter(0, {k: v for k, v in adapters[1].items() if k != "_logits"})
    with torch.no_grad(), multi.use_slots([1, -1, 0]):  # a slot loaded anew is seen at once
        torch.testing.assert_close(model(input_ids=ids[:, :1]).logits[2], adapters[1]["_logits"][2, :1], **tol)
    multi.load_adapter(0, {k: v for k, v in adapters[0].items() if k != "_logits"})

    out = multi.save_peft_adapter(1, tmp_path / "adapter", "tiny")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == LORA.rank
    assert not list(tmp_path.glob(".*tmp*"))
    assert_same(multi.adapter_state_dict(1), {k: v for k, v in adapters[1].items() if k != "_logits"}, atol=0)
    multi.remove()
    loaded = PeftModel.from_pretrained(tiny_model(dtype=dtype), str(out))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, adapters[1]["_logits"], **tol)


def test_load_adapter_rejects_wrong_shapes():
    multi = MultiLoraModel(tiny_model(), 1, LORA)
    sd = multi.adapter_state_dict(0)
    key = next(k for k in sd if "lora_A" in k)
    with pytest.raises(ValueError, match="shape"):
        multi.load_adapter(0, {**sd, key: torch.zeros(3, 3)})
    with pytest.raises(KeyError):
        multi.load_adapter(0, {key: sd[key]})
    with pytest.raises(IndexError):
        multi.load_adapter(1, sd)


def test_large_runs_send_only_mean_curves():
    many = {f"p{i}": examples(1, 100 + i, f"p{i}") for i in range(33)}
    rep = CollectingReporter()
    result = train_many(tiny_model(), 0, many, LORA, TRAIN.replace(num_epochs=1), rep, val_by_adapter=many)
    assert {e.series for e in rep.of_kind("step")} == {"train"}
    assert {e.series for e in rep.of_kind("validation")} == {"val"}
    assert all(len(result.train_losses[pid]) == 1 and len(result.val_losses[pid]) == 1 for pid in many)

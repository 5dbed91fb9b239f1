import json
import re
import time

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import Qwen2Config, Qwen2ForCausalLM

from shpers_core.errors import UserError
from shpers_core.methods.clustering import centrality
from shpers_core.methods.merging import (
    MERGE_MODE_HELP,
    MERGE_MODES,
    MergeError,
    delta_weights,
    merge_lora,
    save_merged_adapter,
    sparse_moe_weights,
    weighted_merge_weights,
)

TARGETS = ["q_proj", "v_proj"]
CFG = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128)
# Three rank-4 adapters with different alpha (so different scalings) and one of rank 2.
SHAPES = [(4, 8), (4, 4), (4, 16), (2, 4)]


def fresh_base(state):
    model = Qwen2ForCausalLM(CFG).eval()
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def lab():
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(CFG).eval()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    configs = [LoraConfig(r=r, lora_alpha=a, target_modules=TARGETS, lora_dropout=0.0) for r, a in SHAPES]
    model = get_peft_model(base, configs[0], adapter_name="a0")
    for i, cfg in enumerate(configs[1:], start=1):
        model.add_adapter(f"a{i}", cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero; random factors make every merge visible
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    adapters = [get_peft_model_state_dict(model, adapter_name=f"a{i}") for i in range(len(configs))]
    scalings = [c.lora_alpha / c.r for c in configs]
    return {"model": model, "base_state": base_state, "configs": configs, "adapters": adapters,
            "scalings": scalings}


def peft_merge(lab, name, n, weights, combination_type, **kw):
    model = lab["model"]
    model.add_weighted_adapter([f"a{i}" for i in range(n)], weights, name, combination_type=combination_type, **kw)
    return get_peft_model_state_dict(model, adapter_name=name), model.peft_config[name]


def summed_delta(adapters, weights, scalings):
    out = {}
    for adapter, w, s in zip(adapters, weights, scalings):
        for name, d in delta_weights(adapter, s).items():
            out[name] = out.get(name, 0) + w * d
    return out


def assert_same_delta(merged, expected, atol=1e-5):
    got = delta_weights(merged.state_dict, merged.scaling)
    assert got.keys() == expected.keys()
    for name in got:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=1e-4)


def test_exact_merge_update_is_the_weighted_sum_of_the_input_updates(lab):
    weights = [0.4, 0.3, 0.2, 0.1]
    merged = merge_lora(lab["adapters"], weights, "exact", scalings=lab["scalings"])
    assert merged.rank == 4 + 4 + 4 + 2 and merged.scaling == 1.0
    assert_same_delta(merged, summed_delta(lab["adapters"], weights, lab["scalings"]))
    # Weights are normalised, so their scale does not matter.
    again = merge_lora(lab["adapters"], [4, 3, 2, 1], "exact", scalings=lab["scalings"])
    for k in merged.state_dict:
        torch.testing.assert_close(again.state_dict[k], merged.state_dict[k])


def test_exact_equals_peft_cat(lab):
    weights = [0.4, 0.3, 0.2, 0.1]
    ours = merge_lora(lab["adapters"], weights, "exact", scalings=lab["scalings"])
    theirs, cfg = peft_merge(lab, "cat", 4, weights, "cat")
    assert (cfg.r, cfg.lora_alpha) == (ours.rank, ours.lora_alpha)
    assert theirs.keys() == ours.state_dict.keys()
    for k in theirs:
        torch.testing.assert_close(ours.state_dict[k], theirs[k], atol=0, rtol=0)


def test_factor_average_equals_peft_linear_and_is_not_the_average_update(lab):
    weights = [0.5, 0.3, 0.2]
    ours = merge_lora(lab["adapters"][:3], weights, "factor_average", scalings=lab["scalings"][:3])
    theirs, cfg = peft_merge(lab, "linear", 3, weights, "linear")
    assert (cfg.r, cfg.lora_alpha) == (ours.rank, ours.lora_alpha) == (4, 4)
    for k in theirs:
        torch.testing.assert_close(ours.state_dict[k], theirs[k], atol=1e-7, rtol=1e-6)
    # sqrt(w·s) on both factors: n copies of one adapter give n times its update.
    one, s = lab["adapters"][0], lab["scalings"][0]
    copies = merge_lora([one] * 3, [1, 1, 1], "factor_average", scalings=s)
    assert_same_delta(copies, {k: 3 * d for k, d in delta_weights(one, s).items()})


def test_tensor_average_averages_the_stored_factors(lab):
    adapters, scalings = lab["adapters"][:3], lab["scalings"][:3]
    merged = merge_lora(adapters, [2, 1, 1], "tensor_average", scalings=scalings)
    w = [0.5, 0.25, 0.25]
    for k, v in merged.state_dict.items():
        if k.endswith("lora_A.weight"):
            expected = sum(wi * a[k] for wi, a in zip(w, adapters))
        else:
            expected = sum(wi * s * a[k] for wi, s, a in zip(w, scalings, adapters))
        torch.testing.assert_close(v, expected)
    one = merge_lora([adapters[0]] * 3, [1, 1, 1], "tensor_average", scalings=scalings[0])
    assert_same_delta(one, delta_weights(adapters[0], scalings[0]))


def test_svd_is_exact_at_full_rank_and_matches_peft_when_truncated(lab):
    weights = [0.4, 0.3, 0.2, 0.1]
    full = merge_lora(lab["adapters"], weights, "svd", scalings=lab["scalings"], rank=14)
    assert full.rank == 14
    assert_same_delta(full, summed_delta(lab["adapters"], weights, lab["scalings"]))
    ours = merge_lora(lab["adapters"], weights, "svd", scalings=lab["scalings"])
    assert ours.rank == 4
    theirs, cfg = peft_merge(lab, "svd4", 4, weights, "svd", svd_rank=4)
    assert cfg.r == ours.rank
    assert_same_delta(ours, delta_weights(theirs, cfg.lora_alpha / cfg.r), atol=1e-4)


def test_ties_matches_peft_ties_svd(lab):
    ours = merge_lora(lab["adapters"][:3], [1, 1, 1], "ties", scalings=lab["scalings"][:3], density=0.5)
    # Our TIES weights have mean 1, which is what PEFT gets from weights of 1.
    theirs, cfg = peft_merge(lab, "ties", 3, [1.0, 1.0, 1.0], "ties_svd", density=0.5, svd_rank=4)
    assert_same_delta(ours, delta_weights(theirs, cfg.lora_alpha / cfg.r), atol=1e-4)


@pytest.mark.parametrize("mode", ["ties", "dare_linear", "dare_ties"])
def test_pruning_modes_are_deterministic_and_keep_shapes(lab, mode):
    args = (lab["adapters"], [0.4, 0.3, 0.2, 0.1], mode)
    rng_before = torch.random.get_rng_state()
    a = merge_lora(*args, scalings=lab["scalings"], density=0.3, seed=7)
    b = merge_lora(*args, scalings=lab["scalings"], density=0.3, seed=7)
    c = merge_lora(*args, scalings=lab["scalings"], density=0.3, seed=8, rank=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert a.rank == 4 and c.rank == 3
    ref = lab["adapters"][0]
    for k, v in a.state_dict.items():
        assert torch.equal(v, b.state_dict[k])
        assert v.shape[1 if k.endswith("lora_A.weight") else 0] == ref[k].shape[1 if k.endswith("lora_A.weight") else 0]
        assert torch.isfinite(v).all() and v.abs().sum() > 0
    if mode.startswith("dare"):
        d = merge_lora(*args, scalings=lab["scalings"], density=0.3, seed=8)
        assert any(not torch.equal(v, d.state_dict[k]) for k, v in a.state_dict.items())


@pytest.mark.parametrize("mode", ["exact", "svd", "factor_average"])
def test_saved_adapter_loads_in_peft_and_gives_the_hand_applied_logits(lab, tmp_path, mode):
    adapters, scalings = lab["adapters"][:3], lab["scalings"][:3]
    merged = merge_lora(adapters, [0.5, 0.3, 0.2], mode, scalings=scalings)
    out = tmp_path / "merged"
    save_merged_adapter(merged, lab["configs"][0], out)
    save_merged_adapter(merged, lab["configs"][0], out)  # replaces the old folder cleanly
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == merged.rank

    loaded = PeftModel.from_pretrained(fresh_base(lab["base_state"]), str(out)).eval()
    by_hand = fresh_base(lab["base_state"])
    with torch.no_grad():
        for name, d in delta_weights(merged.state_dict, merged.scaling).items():
            by_hand.get_submodule(name).weight += d
        ids = torch.randint(0, CFG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
        plain = fresh_base(lab["base_state"])(ids).logits
        got, want = loaded(ids).logits, by_hand(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_zero_weights_leave_adapters_out(lab):
    merged = merge_lora(lab["adapters"], [1, 0, 1, 0], "exact", scalings=lab["scalings"])
    assert merged.rank == 8
    assert_same_delta(merged, summed_delta(lab["adapters"], [0.5, 0, 0.5, 0], lab["scalings"]))


def _without(adapter, part):
    return {k: v for k, v in adapter.items() if part not in k}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a: ([], [], "exact", {}), "at least one adapter"),
        (lambda a: (a[:2], [1.0], "exact", {}), "got 2 adapters but 1 weights"),
        (lambda a: (a[:2], [1.0, -0.5], "exact", {}), "weight 1 is -0.5"),
        (lambda a: (a[:2], [0, 0], "exact", {}), "all weights are 0"),
        (lambda a: (a[:2], [1, 1], "mean", {}), "unknown merge mode 'mean'"),
        (lambda a: (a[:2], [1, 1], "ties", {"density": 0.0}), "density=0.0"),
        (lambda a: (a[:2], [1, 1], "svd", {"rank": 0}), "rank=0"),
        (lambda a: (a[:2], [1, 1], "exact", {"scalings": [2.0]}), "got 2 adapters but 1 scalings"),
        (lambda a: (a[:2], [1, 1], "exact", {"scalings": [2.0, 0.0]}), "scaling 1 is 0.0"),
        (lambda a: ([a[0], a[1], a[2], _without(a[3], "layers.0.self_attn.q_proj.")], [1] * 4, "exact", {}),
         "adapter 3 has no key 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' "
         "(was it trained on another base model?)"),
        (lambda a: ([a[0], {**a[1], "base_model.model.lm_head.lora_A.weight": torch.zeros(4, 32),
                             "base_model.model.lm_head.lora_B.weight": torch.zeros(128, 4)}], [1, 1], "exact", {}),
         "adapter 1 has key 'base_model.model.lm_head.lora_A.weight' that adapter 0 lacks"),
        (lambda a: ([a[0], {k: (v[:, :16] if k.endswith("lora_A.weight") else v) for k, v in a[1].items()}],
                    [1, 1], "exact", {}), "maps 16→32 features but adapter 0 maps 32→32"),
        (lambda a: ([a[0], a[3]], [1, 1], "factor_average", {}), "factor_average needs equal ranks"),
        (lambda a: ([{**a[0], "base_model.model.lm_head.weight": torch.zeros(1)}], [1], "exact", {}),
         "is not a LoRA A or B weight"),
        (lambda a: ([_without(a[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")], [1],
                    "exact", {}), "has no key 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight'"),
    ],
)
def test_bad_merges_say_what_is_wrong(lab, make, message):
    adapters, weights, mode, kw = make(lab["adapters"])
    kw.setdefault("scalings", 2.0)
    with pytest.raises(MergeError, match=re.escape(message)) as err:
        merge_lora(adapters, weights, mode, **kw)
    assert isinstance(err.value, UserError)


def test_every_mode_has_help():
    assert set(MERGE_MODES) == set(MERGE_MODE_HELP) >= {"factor_average", "exact", "svd", "ties", "dare_linear",
                                                        "dare_ties"}
    assert all(MERGE_MODE_HELP[m] for m in MERGE_MODES)


def test_200_sparse_moe_merges_take_seconds():
    # Qwen2.5-0.5B's q_proj and v_proj shapes at rank 8: 24 layers.
    g = torch.Generator().manual_seed(0)
    pool = []
    for _ in range(10):
        adapter = {}
        for layer in range(24):
            for proj, out in (("q_proj", 896), ("v_proj", 128)):
                key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
                adapter[key + ".lora_A.weight"] = torch.randn(8, 896, generator=g)
                adapter[key + ".lora_B.weight"] = torch.randn(out, 8, generator=g)
        pool.append(adapter)
    # Merge ops are too small to gain from threads, and on a shared, oversubscribed machine
    # OpenMP's waiting makes two threads ~80x slower than one; time the merging, not that.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for i in range(200):
            picks = [(i + j) % len(pool) for j in range(5)]
            merge_lora([pool[p] for p in picks], [0.3, 0.2, 0.2, 0.2, 0.1], "factor_average", scalings=2.0)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert elapsed < 30


def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    labels = np.repeat([0, 1, 2], [6, 4, 2])
    return centres[labels] + rng.normal(size=(12, 8)) * 0.5, labels


def test_sparse_moe_weights_stay_in_cluster_include_self_and_sum_to_one():
    vecs, labels = blobs()
    weights = sparse_moe_weights(vecs, labels, k=5)
    assert sorted(weights) == list(range(12))
    for i, pairs in weights.items():
        rows = [j for j, _ in pairs]
        assert rows[0] == i and len(rows) == min(5, int((labels == labels[i]).sum()))
        assert all(labels[j] == labels[i] for j in rows)
        assert sum(w for _, w in pairs) == pytest.approx(1.0)
        assert all(w >= 0 for _, w in pairs)
    # Opposite vectors in one cluster get weight 0, not a negative weight.
    w = sparse_moe_weights(np.array([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]]), [0, 0, 0], k=3)
    assert dict(w[0]) == pytest.approx({0: 1 / 1.6, 2: 0.6 / 1.6, 1: 0.0})


def test_weighted_merge_weights_are_score_times_centrality_per_cluster():
    vecs, labels = blobs()
    scores = np.linspace(0.2, 0.9, 12)
    weights = weighted_merge_weights(scores, vecs, labels)
    assert sorted(weights) == [0, 1, 2]
    for c, pairs in weights.items():
        assert [j for j, _ in pairs] == list(np.flatnonzero(labels == c))
        assert sum(w for _, w in pairs) == pytest.approx(1.0)
    raw = scores * np.clip(centrality(vecs, labels), 0, None)
    for c, pairs in weights.items():
        rows = labels == c
        assert [w for _, w in pairs] == pytest.approx(list(raw[rows] / raw[rows].sum()))
    zero = weighted_merge_weights(np.zeros(12), vecs, labels)
    assert [w for _, w in zero[2]] == pytest.approx([0.5, 0.5])
    with pytest.raises(MergeError, match="validation score 3 is nan"):
        weighted_merge_weights(np.array([0.5, 0.5, 0.5, np.nan] + [0.5] * 8), vecs, labels)
    with pytest.raises(MergeError, match="got 12 personas but 3 validation scores"):
        weighted_merge_weights(np.ones(3), vecs, labels)

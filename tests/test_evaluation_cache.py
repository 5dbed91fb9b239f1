"""Evaluation that keeps each test dialogue's cache from turn to turn, and prompts cut to the context."""

import pytest
import torch
from test_evaluation_generation import random_adapter

from shpers_core.data import generate_dataset
from shpers_core.evaluation.evaluate import generate_dialogues_for_plan
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.models import load_base
from shpers_core.training.adapter_types import Adapter


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def base(request, models_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        yield load_base("tiny-qwen2", device="cpu", dtype=request.param)


@pytest.fixture(scope="module")
def dialogues():
    dataset = generate_dataset(4, 3, seed=3)
    out = []
    for pid, persona in dataset.personas.items():
        for d in persona.dialogues[:2]:
            out.append((pid, [history for history, _ in d.turns()]))
    return out


def both_ways(base, plan, dialogues, batch_size=3):
    """Replies with the cache reused and with every prompt encoded whole (today's path).

    In float32 they must be the same. In bf16 the prompt computed in pieces rounds differently
    from the prompt computed at once, and this random model's logits have near-ties, so a few
    greedy replies may part; nearly all must agree.
    """
    new, cut_new = generate_dialogues_for_plan(base, plan, dialogues, None, 10, batch_size)
    old, cut_old = generate_dialogues_for_plan(base, plan, dialogues, None, 10, batch_size, reuse_cache=False)
    assert cut_new == cut_old == 0
    assert [len(t) for t in new] == [len(t) for t in old]
    if base.dtype == "float32":
        assert new == old
    else:
        flat = list(zip([r for t in new for r in t], [r for t in old for r in t]))
        assert sum(a == b for a, b in flat) >= 0.85 * len(flat)
    return new, old


def test_reused_cache_gives_the_replies_of_whole_prompts(base, dialogues):
    pids = sorted({pid for pid, _ in dialogues})
    adapters = [Adapter(random_adapter(base.model, seed), 2.0) for seed in (1, 2)]
    plan = EvalPlan(adapters={pid: adapters[i % 2] if i < 3 else None for i, pid in enumerate(pids)})
    new, old = both_ways(base, plan, dialogues)
    assert sum(len(turns) for turns in new) > len(dialogues)  # dialogues of several turns
    assert len({r for turns in new for r in turns}) > 1


def test_reuse_with_system_prompts_soft_prompts_and_kv_prefixes(base, dialogues):
    from shpers_core.evaluation.generation import kv_shape

    pids = sorted({pid for pid, _ in dialogues})
    g = torch.Generator().manual_seed(0)
    hidden = base.model.get_input_embeddings().weight.shape[1]
    layers, heads, head_dim = kv_shape(base.model)
    plan = EvalPlan(system={pids[0]: "You are a careful assistant for a quiet home."},
                    soft_prompts={pids[1]: torch.randn(3, hidden, generator=g)},
                    kv_prefixes={pids[2]: torch.randn(layers, 2, heads, 4, head_dim, generator=g)})
    both_ways(base, plan, dialogues)


def test_a_system_prompt_that_changes_every_turn_is_recomputed(base, dialogues):
    """Retrieval: turn k+1's prompt does not extend turn k's, so the row's cache is kept only where they agree."""
    plan = EvalPlan(system_for_turn=lambda pid, history: f"Earlier: {len(history)} messages. Persona {pid}.")
    both_ways(base, plan, dialogues, batch_size=8)


def test_a_huge_message_is_cut_to_the_context(base):
    import resource

    history = [{"role": "user", "content": "turn on the lights " * 5000},
               {"role": "assistant", "content": "Done."},
               {"role": "user", "content": "dim the kitchen " * 400_000}]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    replies, cut = generate_dialogues_for_plan(base, EvalPlan(), [("p", [history[:1], history])], None, 8, 4)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert cut == 2 and len(replies[0]) == 2
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB"


def test_length_groups_put_similar_lengths_together():
    from shpers_core.evaluation.dialogues import length_groups

    lengths = [100, 90, 50, 200, 170, 45]
    assert length_groups(lengths, 0.8) == [[3, 4], [0, 1], [2, 5]]
    assert length_groups(lengths, 0.0) == [[3, 4, 0, 1, 2, 5]]
    assert sorted(i for g in length_groups(lengths, 1.0) for i in g) == list(range(6))
    assert length_groups([], 0.8) == []


def test_prefill_in_groups_gives_the_replies_of_one_padded_prefill(base, dialogues, monkeypatch):
    """Dialogues of different lengths are prefilled in several groups, put side by side; the replies
    (adapters, soft prompts and KV prefixes of different sizes mixed) are those of one batch padded
    to its longest: the same in float32, nearly all in bf16."""
    from shpers_core.evaluation import dialogues as module
    from shpers_core.evaluation.generation import kv_shape

    pids = sorted({pid for pid, _ in dialogues})
    g = torch.Generator().manual_seed(1)
    hidden = base.model.get_input_embeddings().weight.shape[1]
    layers, heads, head_dim = kv_shape(base.model)
    plan = EvalPlan(adapters={pids[0]: Adapter(random_adapter(base.model, 3), 2.0)},
                    soft_prompts={pids[1]: torch.randn(5, hidden, generator=g)},
                    kv_prefixes={pids[2]: torch.randn(layers, 2, heads, 7, head_dim, generator=g),
                                 pids[3]: torch.randn(layers, 2, heads, 2, head_dim, generator=g)})
    formed = []
    grouped = module.length_groups
    monkeypatch.setattr(module, "length_groups", lambda lengths, share: formed.append(grouped(lengths, share)) or formed[-1])
    groups, _ = generate_dialogues_for_plan(base, plan, dialogues, None, 10, 4)
    assert max(len(g) for g in formed) > 1  # some batches prefilled in several groups
    monkeypatch.setattr(module, "PREFILL_GROUP_SHARE", 0.0)
    one, _ = generate_dialogues_for_plan(base, plan, dialogues, None, 10, 4)
    assert len(formed[-1]) == 1
    if base.dtype == "float32":
        assert groups == one
    else:
        flat = list(zip([r for t in groups for r in t], [r for t in one for r in t]))
        assert sum(a == b for a, b in flat) >= 0.85 * len(flat)

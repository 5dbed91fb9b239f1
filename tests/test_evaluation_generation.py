import pytest
import torch
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from shpers_core.evaluation.generation import generate_replies, generate_stream, stop_token_ids
from shpers_core.events import CollectingReporter
from shpers_core.models import load_base
from shpers_core.training.config import LoraParams
from shpers_core.training.fit import lora_config
from shpers_core.training.multi import MultiLoraModel

LORA = LoraParams(lora_dropout=0.0)


@pytest.fixture(scope="module")
def base():
    return load_base("tiny-qwen2")


def random_adapter(model, seed):
    torch.manual_seed(seed)
    pm = get_peft_model(model, lora_config(LORA))
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    sd = {k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()}
    pm.unload()
    return sd


@pytest.fixture()
def multi(base):
    adapters = [random_adapter(base.model, seed) for seed in (1, 2, 3)]
    m = MultiLoraModel(base.model, 3, LORA)
    for slot, sd in enumerate(adapters):
        m.load_adapter(slot, sd)
    yield m
    m.remove()


def prompts(n, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def test_mixed_slot_batches_equal_rows_alone(base, multi):
    ps = prompts(7, len(base.tokenizer))
    slots = [0, 1, 2, -1, 1, 0, 2]
    rep = CollectingReporter()
    batched = generate_replies(base.model, base.tokenizer, ps, slots=slots, multi=multi, max_new_tokens=12,
                               batch_size=4, reporter=rep)
    alone = [generate_replies(base.model, base.tokenizer, [p], slots=[s], multi=multi, max_new_tokens=12)[0]
             for p, s in zip(ps, slots)]
    assert batched == alone
    assert any(len(r) > 0 for r in batched)
    assert len({tuple(r) for r in batched}) > 1  # adapters make a difference
    assert rep.of_kind("progress")[-1].done == 7
    stops = stop_token_ids(base.model, base.tokenizer)
    assert all(t not in stops for r in batched for t in r)


def test_adapter_slot_matches_transformers_generate_on_peft(base):
    ps = prompts(1, len(base.tokenizer), seed=3)
    sd = random_adapter(base.model, 4)
    stops = stop_token_ids(base.model, base.tokenizer)
    pm = get_peft_model(base.model, lora_config(LORA))
    set_peft_model_state_dict(pm, sd)
    out = pm.generate(input_ids=torch.tensor(ps), attention_mask=torch.ones(1, len(ps[0]), dtype=torch.long),
                      max_new_tokens=10, do_sample=False, eos_token_id=sorted(stops),
                      pad_token_id=base.tokenizer.pad_token_id)
    ref = out[0, len(ps[0]):].tolist()
    pm.unload()
    ref = ref[:next((j for j, t in enumerate(ref) if t in stops), len(ref))]

    multi = MultiLoraModel(base.model, 2, LORA)
    try:
        multi.load_adapter(1, sd)
        assert generate_replies(base.model, base.tokenizer, ps, slots=[1], multi=multi, max_new_tokens=10)[0] == ref
    finally:
        multi.remove()
    assert len(ref) > 2


def test_soft_prompt_equals_its_tokens_in_the_prompt(base):
    ps = prompts(3, len(base.tokenizer), seed=5)
    head = [7, 8, 9, 10]
    emb = base.model.get_input_embeddings().weight[head].detach()
    with_prefix = generate_replies(base.model, base.tokenizer, ps, prefix_embeds=[emb, None, emb], max_new_tokens=8,
                                   batch_size=3)
    spelled = generate_replies(base.model, base.tokenizer, [head + ps[0], ps[1], head + ps[2]], max_new_tokens=8)
    assert with_prefix == spelled


def test_stream_yields_the_batched_reply(base, multi):
    p = prompts(1, len(base.tokenizer), seed=9)[0]
    pieces = list(generate_stream(base.model, base.tokenizer, p, slot=2, multi=multi, max_new_tokens=12))
    reply = generate_replies(base.model, base.tokenizer, [p], slots=[2], multi=multi, max_new_tokens=12)[0]
    assert "".join(pieces) == base.tokenizer.decode(reply, skip_special_tokens=True)
    assert len(pieces) > 1


def test_slots_without_multi_are_rejected(base):
    with pytest.raises(ValueError):
        generate_replies(base.model, base.tokenizer, [[5, 6]], slots=[0])

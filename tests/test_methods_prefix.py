"""The learned prefix on tiny-qwen2, both kinds: a soft prompt on the input embeddings (prompt
tuning) and keys and values in every layer (prefix tuning).

The batched generator's KV-cache loop must not drop a trained prefix, so its greedy replies are
compared with PEFT's own model decoded token by token with full forward passes (no cache kept
between steps); the saved folders must load in plain PEFT with the tool's logits; and the
method must run through the job runner to a finished run with per-persona scores, and chat
with such a run must use the prefix.

tiny-qwen2's weights are drawn with std 0.02, so it answers every prompt with one token
repeated whatever comes before; the generator checks use a copy with weights redrawn at std 0.2,
whose replies depend on the prompt and on a prefix.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel, PrefixTuningConfig, PromptTuningConfig, get_peft_model

from shpers_core.evaluation.generation import generate_replies, stop_token_ids
from shpers_core.events import CollectingReporter
from shpers_core.models import encode_dialogue, encode_prompt
from shpers_core.training.adapters import (
    AdapterError,
    load_prefix_tuning,
    load_soft_prompt,
    prefix_key_values,
    save_prefix_tuning,
)
from shpers_core.training.config import TrainParams
from shpers_core.training.fit import fit

TARGET = "Turning on the kitchen lights now."
QUESTIONS = ("Can you help me?", "What should I do tonight?", "Is the door locked?", "Hello there",
             "Set something up for me", "How warm is it?")
NEW_TOKENS = 8


def _examples(tokenizer):
    return [encode_dialogue(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": TARGET}])
            for q in QUESTIONS[:4]]


def _prompts(tokenizer):
    # Unequal lengths, so batches are left-padded.
    return [encode_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS[3:]]


@pytest.fixture(scope="module")
def lively(tiny_base):
    """tiny-qwen2 with its matrices redrawn at std 0.2 (seeded): replies that depend on the input."""
    model = copy.deepcopy(tiny_base.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return SimpleNamespace(model=model.eval(), tokenizer=tiny_base.tokenizer, name=tiny_base.name)


def _train(base, config):
    """A PEFT prompt-learning model over a copy of the base, trained on one reply with ``fit``.

    A high learning rate and no clipping, so that 12 steps move the prefix far from its random
    start and the loss drops: what matters is that ``fit`` trains it and the generator uses it.
    """
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(base.model), config)
    params = TrainParams(learning_rate=0.3, num_epochs=6, batch_size=2, warmup_ratio=0.0, weight_decay=0.0,
                         max_grad_norm=0.0)
    before = peft_model.get_prompt_embedding_to_save("default").clone()
    result = fit(peft_model, base.tokenizer.pad_token_id, _examples(base.tokenizer), None, params,
                 CollectingReporter())
    assert result.train_curve[-1][1] < result.train_curve[0][1] - 1.0
    assert not torch.equal(peft_model.get_prompt_embedding_to_save("default"), before)
    return peft_model.eval()


def _peft_greedy(peft_model, prompt: list[int], stops: set[int]) -> list[int]:
    """Greedy decoding through PEFT's forward, recomputing the whole sequence at every step."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            x = torch.tensor([ids])
            nxt = int(peft_model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
            if nxt in stops:
                break
            ids.append(nxt)
    return ids[len(prompt):]


@pytest.fixture(scope="module")
def trained_prefix(lively):
    return _train(lively, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))


def _kv_of(peft_model) -> torch.Tensor:
    config = peft_model.peft_config["default"]
    return prefix_key_values(peft_model.get_prompt_embedding_to_save("default"), num_layers=config.num_layers,
                             num_heads=config.num_attention_heads)


def test_trained_kv_prefix_changes_the_reply_as_peft_decodes_it(lively, trained_prefix):
    tok = lively.tokenizer
    prompts = _prompts(tok)
    kv = _kv_of(trained_prefix)
    plain = generate_replies(lively.model, tok, prompts, max_new_tokens=NEW_TOKENS)
    # Mixed batch: rows with and without a prefix, of different lengths.
    mixed = generate_replies(lively.model, tok, prompts, kv_prefixes=[kv, None, kv], max_new_tokens=NEW_TOKENS)
    alone = [generate_replies(lively.model, tok, [p], kv_prefixes=[kv], max_new_tokens=NEW_TOKENS)[0]
             for p in prompts]
    assert mixed[1] == plain[1]
    assert [mixed[0], mixed[2]] == [alone[0], alone[2]]
    assert all(with_prefix != without for with_prefix, without in zip(alone, plain))

    stops = stop_token_ids(lively.model, tok)
    assert alone == [_peft_greedy(trained_prefix, p, stops) for p in prompts]


def test_trained_soft_prompt_changes_the_reply_as_peft_decodes_it(lively):
    peft_model = _train(lively, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    tok = lively.tokenizer
    prompts = _prompts(tok)
    soft = peft_model.get_prompt_embedding_to_save("default").detach()
    plain = generate_replies(lively.model, tok, prompts, max_new_tokens=NEW_TOKENS)
    mixed = generate_replies(lively.model, tok, prompts, prefix_embeds=[soft, None, soft],
                             max_new_tokens=NEW_TOKENS)
    assert mixed[1] == plain[1]
    assert mixed[0] != plain[0] and mixed[2] != plain[2]
    stops = stop_token_ids(lively.model, tok)
    assert [mixed[0], mixed[2]] == [_peft_greedy(peft_model, prompts[i], stops) for i in (0, 2)]


def test_saved_prefix_loads_in_plain_peft_with_the_generators_logits(lively, trained_prefix, tmp_path):
    from shpers_core.evaluation.generation import CACHE_ARG, left_padded

    config = trained_prefix.peft_config["default"]
    folder = save_prefix_tuning(tmp_path / "p", trained_prefix.get_prompt_embedding_to_save("default"),
                                base_model=lively.name, num_layers=config.num_layers, token_dim=config.token_dim,
                                num_attention_heads=config.num_attention_heads)
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    kv = load_prefix_tuning(folder)
    assert torch.equal(kv, _kv_of(trained_prefix))

    loaded = PeftModel.from_pretrained(copy.deepcopy(lively.model), str(folder)).eval()
    long, short = _prompts(lively.tokenizer)[1], _prompts(lively.tokenizer)[0]
    assert len(long) > len(short)
    inputs = left_padded(lively.model, [long, short], [None, None], lively.tokenizer.pad_token_id,
                          torch.device("cpu"), [kv, kv])
    with torch.no_grad():
        ours = lively.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                               position_ids=inputs["position_ids"], use_cache=True,
                               **{CACHE_ARG: inputs[CACHE_ARG]}).logits
        for row, prompt in enumerate((long, short)):
            ref = loaded(input_ids=torch.tensor([prompt])).logits[0]
            torch.testing.assert_close(ours[row, -len(prompt):], ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(AdapterError):
        load_soft_prompt(folder)


def test_a_prefix_for_another_model_shape_is_refused(tiny_base):
    layers = tiny_base.model.config.num_hidden_layers
    wrong = torch.zeros(layers + 1, 2, 2, 3, 16)
    with pytest.raises(ValueError, match="does not fit"):
        generate_replies(tiny_base.model, tiny_base.tokenizer, [[5, 6, 7]], kv_prefixes=[wrong], max_new_tokens=2)


@pytest.fixture(scope="module")
def kv_run(models_cache, tmp_path_factory):
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.jobs.runner import run_job
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    root = tmp_path_factory.mktemp("kv-prefix")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        dataset = generate_dataset(3, 6, seed=2)
        workspace = Workspace.open(root)
        write_jsonl(dataset, workspace.dataset_path)
        personas = sorted(dataset.personas)[:2]
        spec = build_spec("soft_prompt", {"kind": "prefix", "scope": "persona", "num_virtual_tokens": 4,
                                          "prefix_init": "random",
                                          "train.num_epochs": 1, "train.max_length": 128,
                                          "eval.max_test_dialogues": 1, "eval.max_new_tokens": 4},
                          base_model="tiny-qwen2", personas=personas)
        run_id = run_job(spec, workspace, CollectingReporter())
        yield workspace, run_id, personas


def test_kv_prefix_job_finishes_with_per_persona_scores_and_peft_folders(kv_run, tiny_base):
    from shpers_core.methods.soft_prompt import merged_unified
    from shpers_core.store import RunStore

    workspace, run_id, personas = kv_run
    with RunStore(workspace.db_path) as store:
        run = store.get_run(run_id)
        assert run.status == "finished"
        assert store.get_run(run.parent_run_id).method == "unified_lora"
        for metric in ("embedding_similarity", "parameter_f1"):
            assert set(store.persona_scores(run_id, metric=metric)) == set(personas)
        folders = {a.persona_id: str(a.path) for a in store.artefacts(run_id, kind="kv_prefix")}
        config = tiny_base.model.config
        head_dim = config.hidden_size // config.num_attention_heads
        assert run.trainable_params == 2 * 4 * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim
        unified = {a.persona_id: a.path for a in store.artefacts(run.parent_run_id, kind="adapter")}[None]
    assert set(folders) == set(personas)
    recipes = json.loads((workspace.run_dir(run_id) / "plan.json").read_text())
    assert {str(workspace.resolve(recipes[p]["kv_prefix"])) for p in personas} == set(folders.values())
    assert all(recipes[p]["soft_prompt"] is None for p in personas)

    # The saved prefix, loaded by plain PEFT over the merged unified model, gives the tool's reply.
    merged = merged_unified(SimpleNamespace(base=tiny_base), SimpleNamespace(path=unified))
    peft_model = PeftModel.from_pretrained(merged, folders[personas[0]]).eval()
    prompt = _prompts(tiny_base.tokenizer)[0]
    stops = stop_token_ids(tiny_base.model, tiny_base.tokenizer)
    ours = generate_replies(merged, tiny_base.tokenizer, [prompt],
                            kv_prefixes=[load_prefix_tuning(folders[personas[0]])], max_new_tokens=NEW_TOKENS)[0]
    assert ours == _peft_greedy(peft_model, prompt, stops)


def test_chat_with_a_kv_prefix_run_uses_the_prefix(kv_run, shpers_cache, monkeypatch):
    import shpers_core.evaluation.generation as generation
    from shpers_core.jobs.chat import ChatSession
    from shpers_core.store import RunStore

    workspace, run_id, personas = kv_run
    pid = personas[0]
    with RunStore(workspace.db_path) as store:
        folder = {a.persona_id: a.path for a in store.artefacts(run_id, kind="kv_prefix")}[pid]
        turn = next(t for t in store.predictions(run_id, persona_id=pid) if t.turn == 0)
    session = ChatSession(workspace, run_id, pid, max_new_tokens=4)
    assert torch.equal(session.plan.kv_prefixes[pid], load_prefix_tuning(folder))

    seen = []
    for name, key in (("generate_replies", "kv_prefixes"), ("generate_stream", "kv_prefix")):
        real = getattr(generation, name)

        def spy(*args, _real=real, _key=key, **kwargs):
            seen.append(kwargs.get(_key))
            return _real(*args, **kwargs)

        monkeypatch.setattr(generation, name, spy)
    reply = session.reply(turn.history)
    assert reply == turn.prediction  # what the evaluation generated for this turn, prefix and all
    assert "".join(session.stream_reply(turn.history)).strip() == reply  # the stream is not stripped
    assert torch.equal(seen[0][0], session.plan.kv_prefixes[pid]) and seen[1] is session.plan.kv_prefixes[pid]


def test_a_kv_prefix_from_the_description_starts_where_the_text_prefix_is(lively):
    """Before any training, a prefix made of the model's own keys and values of the description answers
    exactly as the description given as text before the prompt: in PEFT and in the generator."""
    from shpers_core.methods.soft_prompt import description_key_values, flat_prefix
    from shpers_core.models.chat import _render, _tokenize

    tok = lively.tokenizer
    text = "The person you are helping: likes the lights dim and the house cool at night."
    kv = description_key_values(lively.model, tok, text)
    text_ids = _tokenize(tok, _render(tok, [{"role": "system", "content": text}], False))[0]
    layers, two, heads, n, head_dim = kv.shape
    assert (two, n) == (2, len(text_ids))
    prompts = _prompts(tok)
    ours = generate_replies(lively.model, tok, prompts, kv_prefixes=[kv] * len(prompts), max_new_tokens=NEW_TOKENS)
    as_text = generate_replies(lively.model, tok, [text_ids + p for p in prompts], max_new_tokens=NEW_TOKENS)
    assert ours == as_text
    assert ours != generate_replies(lively.model, tok, prompts, max_new_tokens=NEW_TOKENS)

    peft_model = get_peft_model(copy.deepcopy(lively.model), PrefixTuningConfig(task_type="CAUSAL_LM",
                                                                                  num_virtual_tokens=n))
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(flat_prefix(kv))
        x = torch.tensor([prompts[0]])
        logits = peft_model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1]
        expected = lively.model(input_ids=torch.tensor([text_ids + prompts[0]])).logits[0, -1]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)

"""Chat rendering and label masking through real chat templates (tiny-qwen2's Qwen ChatML and SmolLM2's)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from shpers_core.data.schema import Dialogue, Message
from shpers_core.models import ModelError, decode_reply, encode_dialogue, encode_prompt, to_chat
from shpers_core.models.smollm2 import GGUF_FILE, gguf_path
from shpers_core.training.batching import IGNORE_INDEX

CHAT = [
    Message("user", "Turn on the kitchen lights"),
    Message("assistant", "Done, the kitchen lights are on."),
    Message("user", "And set the thermostat to 21"),
    Message("assistant", "The thermostat is set to 21°C. ✓"),
]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    # Straight from the GGUF's metadata: no conversion of the weights needed for template tests.
    return AutoTokenizer.from_pretrained(gguf_path().parent, gguf_file=GGUF_FILE)


@pytest.fixture(params=["tiny-qwen2", "smollm2"])
def tokenizer(request, tiny_base):
    if request.param == "tiny-qwen2":
        return tiny_base.tokenizer
    return request.getfixturevalue("smollm2_tokenizer")


def labelled_runs(tokenizer, example) -> list[str]:
    """Decoded text of each maximal run of labelled tokens."""
    runs, current = [], []
    for tok, lab in zip(example.input_ids, example.labels):
        if lab != IGNORE_INDEX:
            assert lab == tok
            current.append(lab)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(r) for r in runs]


def replies(messages) -> list[str]:
    return [m.text + "<|im_end|>" for m in messages if m.role == "assistant"]


def test_labels_cover_exactly_the_replies_and_their_end_token(tokenizer):
    example = encode_dialogue(tokenizer, CHAT)
    assert labelled_runs(tokenizer, example) == replies(CHAT)
    rendered = tokenizer.apply_chat_template(to_chat(CHAT), tokenize=False)
    assert list(example.input_ids) == tokenizer(rendered, add_special_tokens=False)["input_ids"]


def test_system_prompt_is_rendered_but_not_labelled(tokenizer):
    example = encode_dialogue(tokenizer, CHAT, system="You run Sam's smart home.")
    assert "You run Sam's smart home." in tokenizer.decode(example.input_ids)
    assert labelled_runs(tokenizer, example) == replies(CHAT)


def test_dialogue_gives_its_persona_and_an_opening_reply_is_labelled(tokenizer):
    opening = (Message("assistant", "Good morning! The heating is on."), *CHAT)
    example = encode_dialogue(tokenizer, Dialogue("p7", "Sam", opening))
    assert example.persona_id == "p7"
    assert labelled_runs(tokenizer, example) == replies(opening)


def test_long_dialogue_loses_whole_leading_turns(tokenizer):
    long = [Message(role, f"{text} number {i}") for i in range(12) for role, text in
            (("user", "Dim the hallway lights please"), ("assistant", "Hallway lights dimmed to 30%"))]
    full = encode_dialogue(tokenizer, long, max_length=10_000)
    cut = encode_dialogue(tokenizer, long, max_length=len(full) // 2)
    assert len(cut) <= len(full) // 2
    runs = labelled_runs(tokenizer, cut)
    assert runs and runs == replies(long)[-len(runs):]
    assert tokenizer.decode(cut.input_ids).startswith("<|im_start|>system")


def test_an_exchange_longer_than_max_length_is_cut_from_the_left(tokenizer):
    example = encode_dialogue(tokenizer, CHAT, max_length=12)
    assert len(example) == 12
    assert tokenizer.decode(example.input_ids).endswith("✓<|im_end|>\n")


def test_prompt_ends_with_the_generation_prompt_and_reply_decodes_to_the_turn_end(tokenizer):
    ids = encode_prompt(tokenizer, CHAT[:1], system="Be brief.")
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nBe brief.") and text.endswith("<|im_start|>assistant\n")
    generated = tokenizer(" Lights on. <|im_end|>\n<|im_start|>user\nmore", add_special_tokens=False)["input_ids"]
    assert decode_reply(tokenizer, generated) == "Lights on."


def test_to_chat_accepts_messages_and_dicts():
    chat = to_chat([Message("user", "hi"), {"role": "assistant", "text": "hello"},
                    {"role": "user", "content": "bye"}], system="sys")
    assert chat == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
    with pytest.raises(ModelError):
        to_chat([{"role": "user"}])


def test_tokenizer_without_template_is_a_model_error(tiny_base):
    tok = AutoTokenizer.from_pretrained(tiny_base.source)
    tok.chat_template = None
    with pytest.raises(ModelError, match="no chat template"):
        encode_prompt(tok, CHAT[:1])


_text = st.text(st.characters(codec="ascii", categories=("L", "N", "P", "Zs")), min_size=1, max_size=40).map(str.strip)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(_text, _text), min_size=1, max_size=4))
def test_any_dialogue_labels_exactly_its_replies(tiny_base, turns):
    messages = [Message(role, text or "ok") for u, a in turns for role, text in (("user", u), ("assistant", a))]
    example = encode_dialogue(tiny_base.tokenizer, messages)
    assert labelled_runs(tiny_base.tokenizer, example) == replies(messages)

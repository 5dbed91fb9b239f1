"""Loading and validating datasets: good shapes, a corpus of bad inputs, streaming, fuzzing."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shpers_core.data import Dataset, DatasetError, load_dataset, write_jsonl
from shpers_core.errors import UserError
from shpers_core.models.tiny import SAMPLE_CORPUS

BAD = Path(__file__).parent / "bad_inputs"
SAMPLE = SAMPLE_CORPUS


def record(pid="persona_001", character="Ana likes warm light.", n_turns=1, key="text"):
    messages = []
    for i in range(n_turns):
        messages += [{"role": "user", key: f"Turn on lamp {i}"}, {"role": "assistant", key: f"Lamp {i} on."}]
    return {"persona_id": pid, "character": character, "messages": messages}


# file -> pieces the one-line message must contain (file, record, field, what is wrong)
BAD_CASES = {
    "malformed.jsonl": ["malformed.jsonl", "line 3", "malformed JSON", "column 64"],
    "malformed_array.json": ["malformed_array.json", "malformed JSON", "line 4 column 22"],
    "not_utf8.jsonl": ["not_utf8.jsonl", "line 2", "not valid UTF-8", "byte offset 251"],
    "messages_not_array.jsonl": ["line 2", "'messages'", "must be an array", "got string"],
    "persona_id_not_string.jsonl": ["line 2", "'persona_id'", "must be a string", "got number"],
    "missing_character.jsonl": ["line 3", "missing field 'character'"],
    "missing_text.jsonl": ["line 1", "missing field 'messages[0].text'"],
    "empty_message.jsonl": ["line 2", "'messages[1].text'", "is empty"],
    "wrong_role.jsonl": ["line 1", "'messages[0].role'", "'system'", "must be 'user' or 'assistant'"],
    "wrong_order.jsonl": ["line 2", "'messages[1].role'", "alternate", "expected 'assistant'"],
    "ends_with_user.jsonl": ["line 4", "'messages[2]'", "must end with the assistant"],
    "duplicate_persona.jsonl": ["line 3", "'character'", "persona 'persona_001'", "line 1"],
    "too_few_dialogues.jsonl": ["line 4", "'persona_id'", "persona_002", "2 dialogues", "at least 3"],
    "empty.jsonl": ["empty.jsonl", "empty"],
    "record_not_object.jsonl": ["line 2", "must be a JSON object", "got array"],
    "persona_dependent_not_bool.jsonl": ["line 1", "'messages[1].persona_dependent'", "true, false or null"],
    "array_wrong_role.json": ["array_wrong_role.json", "record 2", "'messages[1].role'", "'bot'"],
}


def test_every_bad_input_file_has_a_case():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_gives_its_specific_one_line_message(name):
    with pytest.raises(DatasetError) as info:
        load_dataset(BAD / name)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(BAD / name))
    for piece in BAD_CASES[name]:
        assert piece in message, (piece, message)
    assert isinstance(info.value, UserError)


def write_lines(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_array_and_folder_agree(tmp_path):
    records = [record(pid=f"persona_00{p}", character=f"Person {p}", n_turns=k + 1) for p in range(2) for k in range(3)]
    jsonl = write_lines(tmp_path / "a.jsonl", records)
    array = tmp_path / "b.json"
    array.write_text(json.dumps(records, indent=2), encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    write_lines(folder / "2.jsonl", records[3:])
    write_lines(folder / "1.jsonl", records[:3])
    (folder / "notes.txt").write_text("ignored")
    loaded = [load_dataset(p) for p in (jsonl, array, folder)]
    assert len({ds.content_hash() for ds in loaded}) == 1
    ds = loaded[0]
    assert ds.persona_ids == ["persona_000", "persona_001"]
    assert [len(d.messages) for d in ds.personas["persona_000"].dialogues] == [2, 4, 6]


def test_content_key_blank_lines_and_bom_are_accepted(tmp_path):
    lines = [json.dumps(record(key="content")) for _ in range(3)]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n\n".join(lines) + "\n   \n").encode())
    ds = load_dataset(path)
    assert ds.dialogues()[0].messages[1].text == "Lamp 0 on."


def test_folder_without_dataset_files_and_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="no .json or .jsonl"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")


def test_huge_json_array_is_refused_with_a_jsonl_hint(tmp_path, monkeypatch):
    from shpers_core.data import loader

    path = tmp_path / "big.json"
    path.write_text(json.dumps([record()] * 3))
    monkeypatch.setattr(loader, "JSON_ARRAY_LIMIT", 100)
    with pytest.raises(DatasetError, match="convert it to JSONL"):
        load_dataset(path)


def test_write_then_load_round_trips_and_is_atomic(tmp_path):
    ds = load_dataset(SAMPLE)
    out = write_jsonl(ds, tmp_path / "sub" / "copy.jsonl")
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert load_dataset(out).content_hash() == ds.content_hash()
    assert [p.name for p in out.parent.iterdir()] == ["copy.jsonl"]  # no temp file left


def test_jsonl_is_streamed_not_read_whole(tmp_path):
    # Long character text repeated on every line (as in real exports) dominates the file; a
    # streaming loader keeps one copy per persona, a whole-file read would hold all of it.
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for p in range(4):
            character = f"Persona {p}. " + "Likes the lights warm and the house quiet. " * 100
            for _ in range(500):
                fh.write(json.dumps(record(pid=f"persona_{p:03d}", character=character)) + "\n")
    size = path.stat().st_size
    assert size > 8_000_000
    tracemalloc.start()
    try:
        ds = load_dataset(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds.dialogues()) == 2000
    assert peak < size / 4, (peak, size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda r, junk: json.dumps(r).encode()[: len(junk) + 20] + junk,
              st.just(record()), st.binary(max_size=40)),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(
                     st.sampled_from(["persona_id", "character", "messages", "role", "text", "content"]), c, max_size=4),
                 max_leaves=12).map(lambda v: (json.dumps(v) + "\n").encode() * 3),
), suffix=st.sampled_from([".jsonl", ".json"]))
def test_any_bytes_give_a_dataset_or_a_dataset_error(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        assert isinstance(load_dataset(path), Dataset)
    except DatasetError as exc:
        assert "\n" not in str(exc)


def test_deeply_nested_json_is_a_dataset_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="malformed JSON"):
        load_dataset(path)


def test_lone_surrogate_escape_is_refused(tmp_path):
    r = record()
    r["messages"][0]["text"] = "\ud800 lamp"
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(r) + "\n")
    with pytest.raises(DatasetError, match=r"line 1: field 'messages\[0\].text' contains an unpaired surrogate"):
        load_dataset(path)

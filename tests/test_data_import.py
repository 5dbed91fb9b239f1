"""``shpers data import``: EdgeWisePersona and chat-layout datasets in, one-line errors, nothing half-imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shpers_core.cli.main import main
from shpers_core.data import load_dataset
from shpers_core.data.importers import import_dataset
from shpers_core.models.tiny import SAMPLE_CORPUS
from shpers_core.workspace import Workspace

DATA = Path(__file__).parent / "data"
EWP = DATA / "edgewisepersona"
CHAT = DATA / "chat_messages.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("shpers: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_edgewisepersona_users_become_personas_and_sessions_dialogues():
    result = import_dataset(EWP)
    ds = result.dataset
    assert result.format == "edgewisepersona"
    assert ds.persona_ids == ["user-001", "user-002", "user-003", "user-004"]
    assert result.skipped == ["user-005"]  # two sessions only
    sessions = [u["sessions"] for u in _lines(EWP / "sessions.jsonl")]
    routines = [u["routines"] for u in _lines(EWP / "routines.jsonl")]
    for n, pid in enumerate(ds.persona_ids):
        persona = ds.personas[pid]
        assert persona.character == _lines(EWP / "characters.jsonl")[n]["character"]
        assert persona.meta["routines"] == routines[n]
        assert len(persona.dialogues) == len(sessions[n])
        for d, s in zip(persona.dialogues, sessions[n]):
            assert d.meta["context"] == s["meta"] and d.meta["applied_routines"] == s["applied_routines"]
            replies = [m for m in d.messages if m.role == "assistant"]
            assert replies and all(m.persona_dependent is bool(s["applied_routines"]) for m in replies)
            assert d.messages[0].role == "user" and d.messages[-1].role == "assistant"


def test_greeting_and_unanswered_last_message_are_dropped():
    ds = import_dataset(EWP).dataset
    raw = _lines(EWP / "sessions.jsonl")[0]["sessions"][2]
    assert raw["messages"][0]["role"] == "assistant"
    d = ds.personas["user-001"].dialogues[2]
    assert [m.text for m in d.messages] == [m["text"] for m in raw["messages"][1:]]
    raw = _lines(EWP / "sessions.jsonl")[0]["sessions"][3]
    assert raw["messages"][-1]["role"] == "user"
    assert [m.text for m in ds.personas["user-001"].dialogues[3].messages] == [m["text"] for m in raw["messages"][:-1]]


def test_import_makes_it_the_workspace_dataset_and_keeps_the_previous(tmp_path, capsys):
    ws = Workspace.open(tmp_path / "ws")
    assert main(["--workspace", str(ws.root), "data", "generate", "--personas", "3", "--dialogues", "4"]) == 0
    before = load_dataset(ws.dataset_path)
    assert main(["--workspace", str(ws.root), "data", "import", str(EWP)]) == 0
    out = capsys.readouterr().out
    assert "4 personas" in out and "skipped 1 persona" in out and "user-005" in out
    now = load_dataset(ws.dataset_path)
    assert now.persona_ids == ["user-001", "user-002", "user-003", "user-004"]
    kept = ws.root / "dataset" / "archive" / f"{before.content_hash()}.jsonl"
    assert f"previous dataset kept at {kept}" in out
    assert load_dataset(kept).content_hash() == before.content_hash()
    # Metadata survives the round trip through the workspace file, and so does the hash.
    assert now.content_hash() == import_dataset(EWP).dataset.content_hash()
    assert now.personas["user-002"].meta["routines"][0]["actions"]["lights"]["color"] == "warm"


def test_strict_refuses_users_with_too_few_sessions_and_writes_nothing(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "data", "import", str(EWP), "--strict"]) == 2
    _one_line_error(capsys, "sessions.jsonl: line 5", "'sessions'", "user-005", "2 dialogues")
    assert not (ws / "dataset").exists()


def _broken_copy(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "ewp"
    shutil.copytree(EWP, folder)
    sessions = _lines(folder / "sessions.jsonl")
    edit(folder, sessions)
    (folder / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sessions))
    return folder


def _drop_last_character(folder, sessions):
    lines = (folder / "characters.jsonl").read_text().splitlines(keepends=True)
    (folder / "characters.jsonl").write_text("".join(lines[:-1]))


def _unknown_role(folder, sessions):
    sessions[1]["sessions"][2]["messages"][1]["role"] = "system"


def _empty_session(folder, sessions):
    sessions[2]["sessions"][4]["messages"] = []


def _missing_meta(folder, sessions):
    del sessions[0]["sessions"][0]["meta"]


@pytest.mark.parametrize("edit, needles", [
    (_drop_last_character, ["characters.jsonl has 4", "sessions.jsonl has 5", "line for line"]),
    (_unknown_role, ["sessions.jsonl: line 2", "'sessions[2].messages[1].role'", "'system'"]),
    (_empty_session, ["sessions.jsonl: line 3", "'sessions[4].messages' is empty"]),
    (_missing_meta, ["sessions.jsonl: line 1", "missing field 'sessions[0].meta'"]),
])
def test_bad_edgewisepersona_is_one_line_naming_file_line_field_and_nothing_changes(tmp_path, capsys, edit, needles):
    ws = Workspace.open(tmp_path / "ws")
    assert main(["--workspace", str(ws.root), "data", "import", str(CHAT), "--persona-field", "user_id"]) == 0
    before = ws.dataset_path.read_bytes()
    capsys.readouterr()
    folder = _broken_copy(tmp_path, edit)
    assert main(["--workspace", str(ws.root), "data", "import", str(folder), "--format", "edgewisepersona"]) == 2
    _one_line_error(capsys, *needles)
    assert ws.dataset_path.read_bytes() == before
    assert len(list((ws.root / "dataset" / "archive").iterdir())) == 1


def test_chat_layout_with_persona_and_character_columns():
    result = import_dataset(CHAT, "chat", persona_field="user_id", character_field="profile")
    ds = result.dataset
    assert ds.persona_ids == ["u1", "u2", "u3", "u4"] and result.skipped == ["u5"]
    records = [r for r in _lines(CHAT) if r["user_id"] == "u2"]
    assert ds.personas["u2"].character == records[0]["profile"]
    first = ds.personas["u2"].dialogues[0]
    # The leading system message is kept aside, not trained on as a turn.
    assert first.meta == {"system": records[0]["messages"][0]["content"]}
    assert [m.text for m in first.messages] == [m["content"] for m in records[0]["messages"][1:]]
    assert all(m.persona_dependent is None for d in ds.dialogues() for m in d.messages)


def test_chat_layout_errors(tmp_path, capsys):
    assert main(["--workspace", str(tmp_path), "data", "import", str(CHAT), "--format", "chat"]) == 2
    _one_line_error(capsys, "--persona-field")
    assert main(["--workspace", str(tmp_path), "data", "import", str(CHAT), "--persona-field", "speaker"]) == 2
    _one_line_error(capsys, "chat_messages.jsonl: line 1", "missing field 'speaker'")
    bad = tmp_path / "bad.jsonl"
    rows = _lines(CHAT)
    rows[3]["messages"][2]["role"] = "tool"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--workspace", str(tmp_path), "data", "import", str(bad), "--persona-field", "user_id"]) == 2
    _one_line_error(capsys, "bad.jsonl: line 4", "'messages[2].role'", "'tool'")
    assert not (tmp_path / "dataset").exists()


def test_hub_id_fails_offline_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHPERS_CACHE", str(tmp_path / "cache"))
    assert main(["--workspace", str(tmp_path), "data", "import", "TCLResearchEurope/EdgeWisePersona"]) == 2
    _one_line_error(capsys, "TCLResearchEurope/EdgeWisePersona", "Hugging Face hub", "import the local folder")
    assert not (tmp_path / "dataset").exists()


def test_own_format_imports_as_today(tmp_path, capsys):
    sample = SAMPLE_CORPUS
    assert main(["--workspace", str(tmp_path), "data", "import", str(sample)]) == 0
    assert "12 personas, 360 dialogues (shpers)" in capsys.readouterr().out
    assert load_dataset(tmp_path / "dataset" / "dialogues.jsonl").content_hash() == load_dataset(sample).content_hash()


def test_hub_id_already_in_the_cache_imports_offline(tmp_path, capsys, monkeypatch):
    """A dataset fetched once by huggingface_hub is found again offline, through the hub client itself."""
    import huggingface_hub.constants

    cache = tmp_path / "cache"
    monkeypatch.setenv("SHPERS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = cache / "hub" / "datasets--TCLResearchEurope--EdgeWisePersona"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(EWP, repo / "snapshots" / commit / "data")
    assert main(["--workspace", str(tmp_path / "ws"), "data", "import", "TCLResearchEurope/EdgeWisePersona"]) == 0
    assert "4 personas, 24 dialogues (edgewisepersona)" in capsys.readouterr().out
    assert load_dataset(tmp_path / "ws" / "dataset" / "dialogues.jsonl").persona_ids[0] == "user-001"

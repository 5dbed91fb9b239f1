"""`shpers chat`: a persona's assistant from a terminal, scripted or interactive, as the app's Chat tab
answers; and chat beside a computing job takes one thread."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from cli_workspace import ROOT, make_workspace, shpers

from shpers_core.data import Message
from shpers_core.events import CollectingReporter
from shpers_core.jobs.chat import ChatSession, stream_together
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.workspace import Workspace

COVERED = ["persona_001", "persona_002"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, models_cache) -> tuple[Path, str]:
    """A unified LoRA run on tiny-qwen2 for two of three personas: (the workspace, the run's id)."""
    root = tmp_path_factory.mktemp("chatcli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        ws = Workspace.open(make_workspace(root, personas=3))
        spec = build_spec("unified_lora", {"train.num_epochs": 1, "eval.max_new_tokens": 4,
                                           "eval.max_test_dialogues": 1},
                          base_model="tiny-qwen2", name="unified", personas=COVERED)
        run_id = run_job(spec, ws, CollectingReporter())
    return root, run_id


def test_messages_are_one_conversation_answered_as_the_apps_chat(workspace, shpers_cache):
    root, run_id = workspace
    rc, out, err = shpers(root, "chat", run_id[:16], "-m", "Turn on the kitchen lights", "-m", "And the hall?",
                          "--max-new-tokens", "6", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["persona"] == COVERED[0] and got["run"] == run_id  # the run's first persona, the full id
    first, second = got["turns"]
    session = ChatSession(Workspace.open(root), run_id, COVERED[0], max_new_tokens=6)
    asked = [Message("user", "Turn on the kitchen lights")]
    assert first["assistant"] == session.reply(asked)
    # The second message follows the first reply in the conversation.
    asked += [Message("assistant", first["assistant"]), Message("user", "And the hall?")]
    assert second["assistant"] == session.reply(asked)
    # tiny-qwen2 is random: it never ends a reply by itself, so each hit the limit.
    assert first["truncated"] and second["truncated"]


def test_piped_lines_print_one_reply_each_and_say_when_cut(workspace, shpers_cache, monkeypatch):
    root, run_id = workspace
    monkeypatch.setattr(sys, "stdin", io.StringIO("Lights on\n\nIs the door locked?\n"))
    rc, out, err = shpers(root, "chat", run_id, "--persona", COVERED[1], "--max-new-tokens", "5")
    assert rc == 0, err
    replies = out.splitlines()
    session = ChatSession(Workspace.open(root), run_id, COVERED[1], max_new_tokens=5)
    assert replies[0] == session.reply([Message("user", "Lights on")])
    assert len(replies) == 2  # the empty line asks nothing
    assert err.count("cut off at the 5-token limit") == 2


def test_mistakes_are_one_line_naming_what(workspace, shpers_cache):
    root, run_id = workspace
    rc, _, err = shpers(root, "chat", run_id, "--persona", "persona_000", "-m", "hi")
    assert rc == 2 and err.count("\n") == 1
    assert f"run {run_id} was not trained for persona 'persona_000'; it covers persona_001, persona_002" in err
    rc, _, err = shpers(root, "chat", run_id, "--model", "tiny-qwen2", "-m", "hi")
    assert rc == 2 and "--model is for chatting without a run" in err
    rc, _, err = shpers(root, "chat", "nosuchrun", "-m", "hi")
    assert rc == 2 and "no run 'nosuchrun'" in err
    rc, _, err = shpers(root, "chat", run_id, "--max-new-tokens", "0", "-m", "hi")
    assert rc == 2 and "--max-new-tokens must be at least 1" in err


def test_without_a_run_it_is_the_base_model(workspace, shpers_cache):
    root, _ = workspace
    rc, out, err = shpers(root, "chat", "--model", "tiny-qwen2", "-m", "Hello", "--max-new-tokens", "4", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["run"] is None and got["persona"] == "persona_000" and got["base_model"] == "tiny-qwen2"
    session = ChatSession(Workspace.open(root), None, "persona_000", base_model="tiny-qwen2", max_new_tokens=4)
    assert got["turns"][0]["assistant"] == session.reply([Message("user", "Hello")])


def _read_until(fd: int, marker: str, seen: list[str], timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    while marker not in "".join(seen):
        left = end - time.monotonic()
        assert left > 0, f"no {marker!r} in {''.join(seen)!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                seen.append(os.read(fd, 4096).decode(errors="replace"))
            except OSError:  # the child closed the terminal
                break
    return "".join(seen)


def test_on_a_terminal_it_streams_replies_resets_and_stops_a_reply_on_ctrl_c(workspace, shpers_cache):
    root, run_id = workspace
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "shpers_core.cli.main", "--workspace", str(root), "chat", run_id,
                              "--max-new-tokens", "1500"],
                             stdin=follower, stdout=follower, stderr=follower, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                             # The terminal becomes the child's own, so its Ctrl+C is a SIGINT to the child.
                             preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(follower)
    seen: list[str] = []
    try:
        text = _read_until(leader, "you> ", seen)
        assert f"Chatting with persona_001 through run {run_id} (\"unified\", unified_lora)." in text
        os.write(leader, b"Turn on the kitchen lights\n")
        _read_until(leader, "assistant> ", seen)
        time.sleep(0.3)
        os.write(leader, b"\x03")  # Ctrl+C while the 1500-token reply streams
        after: list[str] = []
        assert "(stopped)" in _read_until(leader, "you> ", after)
        os.write(leader, b"/reset\n")
        _read_until(leader, "(a new conversation)", seen)
        os.write(leader, b"/quit\n")
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
        os.close(leader)


def _threads_while_replying(session) -> int:
    pieces = stream_together([session], [[Message("user", "Lights on")]])
    next(pieces)
    n = torch.get_num_threads()
    list(pieces)
    return n


def test_chat_beside_a_computing_process_takes_one_thread(workspace, shpers_cache):
    from shpers_core.threads import physical_cores

    root, run_id = workspace
    session = ChatSession(Workspace.open(root), run_id, COVERED[0], max_new_tokens=4)
    before = torch.get_num_threads()
    assert _threads_while_replying(session) == physical_cores()  # alone: every core
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (shpers_cache / "busy").mkdir(parents=True, exist_ok=True)
        (shpers_cache / "busy" / str(job.pid)).touch()  # as a training job registers itself
        assert _threads_while_replying(session) == 1
        assert torch.get_num_threads() == before
    finally:
        job.kill()
        job.wait()


def test_beside_asks_a_second_run_the_same_conversation_each_with_its_own_replies(workspace, shpers_cache):
    root, run_id = workspace
    rc, out, err = shpers(root, "chat", run_id, "--beside", "base", "-m", "Lights on", "-m", "Now off",
                          "--max-new-tokens", "5", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["run"] == run_id and got["beside_run"] is None
    ws = Workspace.open(root)
    sessions = [ChatSession(ws, run_id, COVERED[0], max_new_tokens=5),
                ChatSession(ws, None, COVERED[0], base_model="tiny-qwen2", max_new_tokens=5)]
    for session, replies in zip(sessions, ([t["assistant"] for t in got["turns"]],
                                           [t["beside"]["assistant"] for t in got["turns"]])):
        # Each side's second message follows its own first reply.
        asked = [Message("user", "Lights on")]
        assert replies[0] == session.reply(asked)
        asked += [Message("assistant", replies[0]), Message("user", "Now off")]
        assert replies[1] == session.reply(asked)
    rc, out, err = shpers(root, "chat", run_id, "--beside", "base", "-m", "Lights on", "--max-new-tokens", "5")
    assert rc == 0, err
    assert out.splitlines() == [f"A: {got['turns'][0]['assistant']}", f"B: {got['turns'][0]['beside']['assistant']}"]
    assert "A's reply 1 was cut off" in err and "B's reply 1 was cut off" in err


def test_a_test_dialogue_is_replayed_as_evaluation_asks_it_beside_its_references(workspace, shpers_cache):
    root, run_id = workspace
    ws = Workspace.open(root)
    persona = COVERED[1]
    sessions = [ChatSession(ws, run_id, persona, max_new_tokens=4),
                ChatSession(ws, None, persona, base_model="tiny-qwen2", max_new_tokens=4)]
    dialogues = sessions[0].test_dialogues()
    dialogue = dialogues[-1]
    rc, out, err = shpers(root, "chat", run_id, "--persona", persona, "--beside", "base",
                          "--test-dialogue", str(len(dialogues)), "--max-new-tokens", "4", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["test_dialogue"] == dialogue.dialogue_id and len(got["turns"]) == len(dialogue.turns()) > 0
    assert got["scored_by_evaluation"] is (len(dialogues) == 1)  # the run's evaluation scored the first only
    for turn, (history, reference) in zip(got["turns"], dialogue.turns()):
        # Each turn follows the dialogue's own earlier messages (the references), not the model's replies.
        assert turn["user"] == history[-1].text and turn["reference"] == reference.text
        assert turn["persona_dependent"] == reference.persona_dependent
        assert turn["assistant"] == sessions[0].reply(history)
        assert turn["beside"]["assistant"] == sessions[1].reply(history)
    rc, out, err = shpers(root, "chat", run_id, "--persona", persona, "--test-dialogue", "--max-new-tokens", "4")
    assert rc == 0, err
    assert f"Test dialogue {dialogues[0].dialogue_id} (1 of {len(dialogues)})" in out
    assert out.count("\n  reference  ") == len(dialogues[0].turns()) and "  reply      " in out
    rc, _, err = shpers(root, "chat", run_id, "--persona", persona, "--test-dialogue", "99")
    assert rc == 2 and f"has {len(dialogues)} test dialogue(s): give --test-dialogue 1 to {len(dialogues)}" in err
    rc, _, err = shpers(root, "chat", run_id, "--test-dialogue", "-m", "hello")
    assert rc == 2 and "give it or -m, not both" in err

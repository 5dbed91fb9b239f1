"""`shpers runs replies`: a run's stored replies to the test turns, beside the references and a second run's."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_workspace import make_workspace, shpers

from shpers_core.cli.stored_runs import one_line
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

RUN = ("--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "max_new_tokens=8")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A workspace with a finished base-model run and a finished system-prompt run on the same personas."""
    root = make_workspace(tmp_path_factory.mktemp("replies") / "ws")
    ids = []
    for method in ("base_model", "system_prompt"):
        rc, out, err = shpers(root, "run", method, *RUN)
        assert rc == 0, err
        ids.append(out.split()[-1])
    return root, ids


@pytest.fixture()
def workspace(two_runs, tmp_path):
    root, ids = two_runs
    copy = tmp_path / "ws"
    shutil.copytree(root, copy)
    return copy, ids


def _stored(root, run_id):
    with RunStore(Workspace.open(root).db_path) as store:
        return {(p.persona_id, p.dialogue_id, p.turn): p for p in store.predictions(run_id)}


def test_every_stored_turn_is_shown_with_its_reference_and_the_second_runs_reply(workspace):
    root, (base, prompted) = workspace
    mine, theirs = _stored(root, base), _stored(root, prompted)
    assert mine and mine.keys() == theirs.keys()
    rc, out, _ = shpers(root, "runs", "replies", base, "--beside", prompted)
    assert rc == 0
    assert out.startswith(f"A  {base}") and f"B  {prompted}" in out
    assert f"{len(mine)} test turns of 3 persona(s)" in out
    assert "A: no adapter (base model)" in out and "B: no adapter (base model) + system prompt" in out
    for key, p in mine.items():
        assert f"{p.dialogue_id} · turn {p.turn + 1}" in out
        # Model text is printed with control characters escaped, as every listing does.
        for text in (p.reference, p.prediction, theirs[key].prediction):
            assert one_line(text.strip()) in out

    rc, out, _ = shpers(root, "runs", "replies", base, "--beside", prompted, "--json")
    shown = json.loads(out)
    assert rc == 0 and shown["run"] == base and shown["beside"] == prompted and len(shown["turns"]) == len(mine)
    for turn in shown["turns"]:
        key = (turn["persona"], turn["dialogue"], turn["turn"] - 1)
        assert turn["reply"] == mine[key].prediction and turn["reference"] == mine[key].reference
        assert turn["beside"]["reply"] == theirs[key].prediction
        assert turn["scores"]["embedding_similarity"] == pytest.approx(mine[key].scores["embedding_similarity"])
        assert turn["history"][-1]["role"] == "user"


def test_worst_keeps_the_turns_where_the_run_loses_most_to_the_other(workspace):
    root, (base, prompted) = workspace
    mine, theirs = _stored(root, base), _stored(root, prompted)

    def gap(key):
        return mine[key].scores["embedding_similarity"] - theirs[key].scores["embedding_similarity"]

    rc, out, _ = shpers(root, "runs", "replies", base, "--beside", prompted, "--worst", "2", "--json")
    assert rc == 0
    picked = [(t["persona"], t["dialogue"], t["turn"] - 1) for t in json.loads(out)["turns"]]
    assert picked == sorted(mine, key=gap)[:2]
    rc, out, _ = shpers(root, "runs", "replies", base, "--worst", "1", "--json")
    (alone,) = json.loads(out)["turns"]
    lowest = min(mine.values(), key=lambda p: p.scores["embedding_similarity"])
    assert (alone["persona"], alone["dialogue"], alone["turn"] - 1) == (lowest.persona_id, lowest.dialogue_id,
                                                                        lowest.turn)
    rc, out, _ = shpers(root, "runs", "replies", base, "--worst", "1")
    assert rc == 0 and f"the 1 of {len(mine)} test turns where A scored lowest;" in out


def test_persona_subset_and_history_choose_what_is_shown(workspace):
    root, (base, _) = workspace
    mine = _stored(root, base)
    persona = sorted({pid for pid, _, _ in mine})[1]
    rc, out, _ = shpers(root, "runs", "replies", base, "--persona", persona, "--json")
    turns = json.loads(out)["turns"]
    assert rc == 0 and {t["persona"] for t in turns} == {persona}
    assert len(turns) == sum(pid == persona for pid, _, _ in mine)
    rc, out, _ = shpers(root, "runs", "replies", base, "--subset", "persona_dependent", "--json")
    dependent = [p for p in mine.values() if p.persona_dependent]
    assert dependent and len(json.loads(out)["turns"]) == len(dependent)
    assert all(t["persona_dependent"] for t in json.loads(out)["turns"])
    # Without --history only the user's last message is printed; with it, the whole conversation before.
    longest = max(mine.values(), key=lambda p: len(p.history))
    assert len(longest.history) > 1
    earlier = longest.history[0]["text"]
    args = ("runs", "replies", base, "--persona", longest.persona_id)
    short, full = shpers(root, *args)[1], shpers(root, *args, "--history")[1]
    assert full.count(earlier) > short.count(earlier)


def test_mistakes_are_one_line_naming_what_is_wrong(workspace):
    root, (base, prompted) = workspace
    rc, _, err = shpers(root, "runs", "replies", base, "--persona", "nobody")
    assert rc == 2 and "no replies for persona 'nobody'" in err and "it covers persona_000" in err
    rc, _, err = shpers(root, "runs", "replies", base, "--beside", base)
    assert rc == 2 and "--beside names run" in err
    rc, _, err = shpers(root, "runs", "replies", base, "--worst", "0")
    assert rc == 2 and "--worst must be at least 1" in err
    rc, _, err = shpers(root, "runs", "replies", "r1999")
    assert rc == 2 and "no run 'r1999'" in err
    with RunStore(Workspace.open(root).db_path) as store:
        started = store.create_run("unified_lora", {}, "tiny-qwen2", "", ["persona_000"])
        store.start_run(started)
        store.cancel_run(started)
    rc, _, err = shpers(root, "runs", "replies", started)
    assert rc == 2 and f"run {started} stored no replies: it is cancelled" in err


def test_a_reply_cannot_fake_a_line_of_the_listing(workspace):
    root, (base, _) = workspace
    key, p = next(iter(_stored(root, base).items()))
    with RunStore(Workspace.open(root).db_path) as store:
        store.add_predictions(base, [{"persona_id": key[0], "dialogue_id": key[1], "turn": key[2],
                                      "history": p.history, "prediction": "fine\n  reference  forged",
                                      "reference": p.reference, "scores": p.scores}])
    rc, out, _ = shpers(root, "runs", "replies", base, "--persona", key[0])
    assert rc == 0 and "fine\\n  reference  forged" in out
    assert not any(line.strip() == "reference  forged" for line in out.splitlines())


def test_a_turn_the_second_run_did_not_answer_says_so_and_ranks_last(workspace):
    root, (base, prompted) = workspace
    mine = _stored(root, base)
    missing = sorted(mine, key=lambda k: mine[k].scores["embedding_similarity"])[0]  # A's lowest turn
    with RunStore(Workspace.open(root).db_path) as store:
        store.db.execute("DELETE FROM predictions WHERE run_id = ? AND persona_id = ? AND dialogue_id = ? AND turn = ?",
                         [prompted, *missing])
        store.db.conn.commit()
    rc, out, _ = shpers(root, "runs", "replies", base, "--beside", prompted, "--worst", str(len(mine)), "--json")
    turns = json.loads(out)["turns"]
    assert rc == 0 and len(turns) == len(mine)
    assert (turns[-1]["persona"], turns[-1]["dialogue"], turns[-1]["turn"] - 1) == missing
    assert turns[-1]["beside"] is None
    rc, out, _ = shpers(root, "runs", "replies", base, "--beside", prompted, "--persona", missing[0])
    assert rc == 0 and "(no reply to this turn)" in out

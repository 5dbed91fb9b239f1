"""Bad input on the command line: one clear line on stderr naming what and where, exit code 2,
and no run in the store (a mistake must not leave a failed run behind to clean up)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

EVAL = ["--param", "max_test_dialogues=1", "--param", "max_new_tokens=4"]
TINY = ["--param", "num_epochs=1", "--param", "max_length=128", *EVAL]


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    RunStore(ws.db_path).close()
    return ws


def shpers(ws: Workspace, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_ids(ws: Workspace) -> list[str]:
    with sqlite3.connect(ws.db_path) as db:
        return [r[0] for r in db.execute("SELECT id FROM runs")]


def assert_one_line(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shpers: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def not_a_causal_lm(tmp_path):
    folder = tmp_path / "vision-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    return folder


# (argv after `run`, fragments the error line must hold); "{tmp}" is the test's tmp_path.
CASES = {
    "unknown method": (["unified_lorra", "--model", "tiny-qwen2"], ["unknown method 'unified_lorra'", "unified_lora"]),
    "unknown parameter": (["unified_lora", "--model", "tiny-qwen2", "--param", "lerning_rate=1e-3"],
                          ["unknown parameter 'lerning_rate'", "learning_rate"]),
    "unknown group": (["unified_lora", "--model", "tiny-qwen2", "--param", "optim.lr=1"],
                      ["unknown parameter group 'optim'"]),
    "parameter of another method": (["base_model", "--model", "tiny-qwen2", "--param", "rank=4"],
                                    ["base_model: unknown parameter 'rank'"]),
    "not key=value": (["unified_lora", "--model", "tiny-qwen2", "--param", "rank"], ["--param 'rank'", "key=value"]),
    "negative rank": (["unified_lora", "--model", "tiny-qwen2", "--param", "rank=-4"], ["LoRA: rank=-4 must be >= 1"]),
    "learning rate 0": (["unified_lora", "--model", "tiny-qwen2", "--param", "learning_rate=0"],
                        ["learning_rate=0.0 must be > 0"]),
    "not a number": (["unified_lora", "--model", "tiny-qwen2", "--param", "num_epochs=two"],
                     ["num_epochs: 'two' is not a valid int"]),
    "k above the persona count": (["cluster_lora", "--model", "tiny-qwen2", "--param", "k=4", *TINY],
                                  ["cluster_lora: k=4 is larger than the 3 selected personas"]),
    # Before the check ran first, these two trained a whole per-persona source run, then failed.
    "merge k above the persona count": (["weighted_merge", "--model", "tiny-qwen2", *EVAL],
                                        ["weighted_merge: k=5 is larger than the 3 selected personas"]),
    "cluster prefix k above the persona count": (
        ["soft_prompt", "--model", "tiny-qwen2", "--param", "scope=cluster", "--param", "k=4", *TINY],
        ["soft_prompt: k=4 is larger than the 3 selected personas"]),
    "model folder missing": (["unified_lora", "--model", "{tmp}/no-such-model"],
                             ["model folder not found: {tmp}/no-such-model"]),
    "model folder is not a causal LM": (["unified_lora", "--model", "{tmp}/vision-model"],
                                        ["not a causal language model (model_type 'vit'): {tmp}/vision-model"]),
    "model file instead of a folder": (["unified_lora", "--model", "{tmp}/vision-model/config.json"],
                                       ["not a model folder (a file was given)"]),
    "unknown model name": (["unified_lora", "--model", "tiny-qwen3"], ["unknown model 'tiny-qwen3'", "tiny-qwen2"]),
    "persona not in the dataset": (["unified_lora", "--model", "tiny-qwen2", "--personas", "persona_000", "persona_999"],
                                   ["persona 'persona_999' is not in the dataset", "persona_000"]),
    "dataset missing": (["unified_lora", "--model", "tiny-qwen2", "--dataset", "{tmp}/nowhere.jsonl"],
                        ["no dataset at {tmp}/nowhere.jsonl"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_run_input_is_one_line_exit_2_and_no_run(case, workspace, tmp_path, capsys):
    not_a_causal_lm(tmp_path)
    argv, fragments = CASES[case]
    rc, _, err = shpers(workspace, capsys, "run", *[a.replace("{tmp}", str(tmp_path)) for a in argv], "-q")
    assert_one_line(rc, err, *[f.replace("{tmp}", str(tmp_path)) for f in fragments])
    assert run_ids(workspace) == []


def test_k_is_only_checked_where_it_is_used():
    """A per-persona soft prompt has a k (for scope=cluster) that must not refuse a small selection."""
    from shpers_core.errors import UserError
    from shpers_core.jobs.runner import check_cluster_count
    from shpers_core.jobs.spec import build_spec

    per_persona = build_spec("soft_prompt", {"scope": "persona", "k": 5}).method_params
    check_cluster_count("soft_prompt", per_persona, ["a", "b"])
    clustered = build_spec("soft_prompt", {"scope": "cluster", "k": 5}).method_params
    with pytest.raises(UserError, match="k=5 is larger than the 2 selected personas"):
        check_cluster_count("soft_prompt", clustered, ["a", "b"])


def test_runs_commands_name_the_run_they_cannot_find_or_resume(workspace, capsys):
    with RunStore(workspace.db_path) as store:
        done = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["persona_000"])
        store.start_run(done)
        store.finish_run(done)
    for action in ("show", "resume", "delete"):
        rc, _, err = shpers(workspace, capsys, "runs", action, "r1999")
        assert_one_line(rc, err, "no run 'r1999' in", str(workspace.db_path))
    rc, _, err = shpers(workspace, capsys, "runs", "resume", done)
    assert_one_line(rc, err, f"run {done} is finished", "only interrupted, cancelled or failed runs resume")
    rc, _, err = shpers(workspace, capsys, "runs", "list", "--status", "crashed")
    assert_one_line(rc, err, "unknown run status 'crashed'")
    assert run_ids(workspace) == [done]


def test_adapter_made_for_another_base_model_is_named(workspace, tmp_path, capsys):
    """A model folder replaced by a model of another shape: the unified adapter a prefix run
    builds on no longer fits, and the error says which adapter and why, instead of a shape traceback."""
    from transformers import AutoTokenizer

    from shpers_core.jobs import runner
    from shpers_core.models.tiny import TINY_SHAPE, random_qwen2, tiny_qwen2_dir

    model_dir = tmp_path / "my-model"
    shutil.copytree(tiny_qwen2_dir(), model_dir)
    rc, out, err = shpers(workspace, capsys, "run", "unified_lora", "--model", str(model_dir), "--device", "cpu",
                          *TINY, "-q")
    assert rc == 0, err
    unified = out.strip().splitlines()[-1]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    shutil.rmtree(model_dir)
    random_qwen2(tokenizer, {**TINY_SHAPE, "hidden_size": 32}, seed=1).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    runner._BASE_CACHE.clear()  # a new command is a new process: the folder is read again

    rc, _, err = shpers(workspace, capsys, "run", "static_prefix", "--model", str(model_dir), "--device", "cpu",
                        *EVAL, "-q")
    adapter = workspace.run_dir(unified) / "adapters" / "unified"
    assert_one_line(rc, err, str(adapter), "was it trained on another base model?")
    with RunStore(workspace.db_path) as store:
        # The mismatch shows only once the model is loaded, so this run exists, failed with the same line.
        failed = store.list_runs(method="static_prefix")
        assert [(r.status, r.error) for r in failed] == [("failed", err.strip().removeprefix("shpers: error: "))]
        assert store.get_run(unified).status == "finished"

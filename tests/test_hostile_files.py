"""Files a user (or a crash, or a tool) damaged or put in the way: truncated adapter weights, bad
adapter configs, a corrupt or malicious checkpoint, a wrong-shape merge source, a workspace that is
a file, an output that is a device or a FIFO, a symlink loop. Each is one line naming the file, and
exit code 2; nothing is replaced that is not a regular file."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

TINY = ["--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "num_epochs=1", "--param", "max_length=64",
        "--param", "max_test_dialogues=1", "--param", "max_new_tokens=2"]


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    return ws


def shpers(ws: Workspace | Path, capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    capsys.readouterr()
    if stdin is not None:
        monkeypatch.setattr("builtins.input", lambda prompt="": (print(prompt, end=""), stdin)[1])
    rc = main(["--workspace", str(ws.root if isinstance(ws, Workspace) else ws), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(rc: int, err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("shpers: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def per_persona_run(ws: Workspace, capsys) -> tuple[str, dict[str, Path]]:
    rc, out, err = shpers(ws, capsys, "run", "per_persona_lora", *TINY)
    assert rc == 0, err
    run_id = out.strip().splitlines()[-1]
    with RunStore(ws.db_path) as store:
        return run_id, {a.persona_id: a.path for a in store.artefacts(run_id, kind="adapter")}


def test_damaged_merge_sources_are_named_in_one_line(workspace, capsys):
    _, adapters = per_persona_run(workspace, capsys)
    folder = adapters[sorted(adapters)[1]]
    weights, config = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    good_weights, good_config = weights.read_bytes(), json.loads(config.read_text())
    merge = ["run", "weighted_merge", "--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "k=2",
             "--param", "max_test_dialogues=1", "--param", "max_new_tokens=2"]

    weights.write_bytes(good_weights[: len(good_weights) // 2])
    one_line(*shpers(workspace, capsys, *merge)[::2], str(weights), "truncated or not safetensors")
    weights.write_bytes(good_weights)

    for change, words in (({"r": 0}, "'r' is 0"), ({"r": "eight"}, "'r' is 'eight'"),
                          ({"lora_alpha": None}, "'lora_alpha' is missing"), ({"lora_alpha": float("nan")}, "'lora_alpha'")):
        bad = {**good_config, **change}
        if change.get("lora_alpha", 0) is None:
            del bad["lora_alpha"]
        config.write_text(json.dumps(bad))
        one_line(*shpers(workspace, capsys, *merge)[::2], str(config), words)
    config.write_text("{not json")
    one_line(*shpers(workspace, capsys, *merge)[::2], str(config), "not valid JSON")
    config.write_text(json.dumps(good_config))

    tensors = load_file(str(weights))
    key = next(k for k in tensors if ".lora_A." in k)
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, str(weights))
    line = one_line(*shpers(workspace, capsys, *merge)[::2], str(folder), "was it trained on another base model?")
    assert "cluster" not in line, "the error must name the bad source, not the merged adapter"


def test_corrupt_checkpoints_say_unreadable_and_the_run_restarts(workspace, capsys, monkeypatch):
    spec = build_spec("unified_lora", {"num_epochs": 2, "batch_size": 2, "max_length": 64, "max_test_dialogues": 1,
                                       "max_new_tokens": 2, "checkpoint_every": 1}, base_model="tiny-qwen2", device="cpu")
    seen: list[int] = []
    reporter = CollectingReporter(should_stop=lambda: len(seen) >= 2)
    reporter.add_sink(lambda e: seen.append(e.step) if e.kind == "step" else None)
    with pytest.raises(JobCancelled):
        run_job(spec, workspace, reporter)
    run_id = reporter.of_kind("cancelled")[0].run_id
    checkpoint = workspace.run_dir(run_id) / "checkpoints" / "unified"
    originals = {p.name: p.read_bytes() for p in checkpoint.iterdir()}

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    damage = {
        "optimizer.pt": pickle.dumps({"optimizer": Boom()}),      # a malicious pickle: refused, never run
        "weights.safetensors": originals["weights.safetensors"][:40],  # truncated
        "state.json": b"{\"step\": ",                                  # bad JSON
    }
    for name, content in damage.items():
        (checkpoint / name).write_bytes(content)
        rc, _, err = shpers(workspace, capsys, "runs", "resume", run_id)
        errors = [line for line in err.splitlines() if line.startswith("shpers: error: ")]  # after its progress lines
        one_line(rc, errors[0] if len(errors) == 1 else err, "checkpoint unreadable", str(checkpoint), "--restart")
        assert "Traceback" not in err and "weights_only` set to `False" not in err
        (checkpoint / name).write_bytes(originals[name])
        with RunStore(workspace.db_path) as store:
            assert store.get_run(run_id).status == "failed"
    assert not Path("pwned").exists() and not (workspace.root / "pwned").exists()

    (checkpoint / "state.json").write_text("[]")
    rc, out, err = shpers(workspace, capsys, "runs", "resume", run_id, "--restart")
    assert rc == 0, err
    with RunStore(workspace.db_path) as store:
        assert store.get_run(run_id).status == "finished"


def test_workspace_that_is_a_file_is_one_line(tmp_path, capsys):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    for argv in (["runs", "list"], ["data", "generate", "--personas", "3", "--dialogues", "3"]):
        one_line(*shpers(file, capsys, *argv)[::2], str(file), "is a file, not a folder")
        one_line(*shpers(file / "sub", capsys, *argv)[::2], "cannot create workspace")
    assert file.read_text() == "x"


def test_generate_refuses_non_regular_outputs_and_asks_before_replacing_a_dataset(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    small = ["data", "generate", "--personas", "3", "--dialogues", "3"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    for target, words in ((fifo, "FIFO"), (folder, "is a folder"), (link, "symbolic link")):
        one_line(*shpers(ws, capsys, *small, "--out", str(target), "--force")[::2], str(target), words, "not replaced")
    assert fifo.is_fifo() and folder.is_dir() and link.is_symlink()
    if os.path.exists("/dev/null"):
        one_line(*shpers(ws, capsys, *small, "--out", "/dev/null", "--force")[::2], "character device")

    out = tmp_path / "data.jsonl"
    assert shpers(ws, capsys, *small, "--out", str(out))[0] == 0
    first = out.read_bytes()
    rc, stdout, err = shpers(ws, capsys, *small, "--seed", "1", "--out", str(out), stdin="n", monkeypatch=monkeypatch)
    assert "replace this dataset?" in stdout
    one_line(rc, err, str(out), "--force")
    assert out.read_bytes() == first
    assert shpers(ws, capsys, *small, "--seed", "1", "--out", str(out), stdin="y", monkeypatch=monkeypatch)[0] == 0
    assert out.read_bytes() != first
    assert shpers(ws, capsys, *small, "--out", str(out), "--force")[0] == 0
    assert out.read_bytes() == first


def test_fifo_and_symlink_loop_are_named_as_such(tmp_path, capsys):
    fifo, loop, dangling = tmp_path / "fifo", tmp_path / "loop", tmp_path / "dangling"
    os.mkfifo(fifo)
    loop.symlink_to(loop)
    dangling.symlink_to(tmp_path / "gone")
    for path, words in ((fifo, "is a FIFO"), (loop, "symbolic link loop"), (dangling, "broken symbolic link"),
                        (tmp_path / "missing", "no such file")):
        one_line(*shpers(tmp_path / "ws", capsys, "data", "validate", str(path))[::2], str(path), words)

"""Dataset ids that are hostile as file names (absolute paths, ``..``, ``.``, separators, control
characters, very long ids, reserved device names) are validated, trained on and deleted without
anything outside the workspace changing, and each persona keeps its own adapter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset
from shpers_core.names import UnsafePathError, child, safe_name
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

CLI_TINY = ["--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "num_epochs=1", "--param", "batch_size=1",
            "--param", "max_length=64", "--param", "max_test_dialogues=1", "--param", "max_new_tokens=2"]


def hostile_ids(parent: Path) -> list[str]:
    """Ids that would write outside the workspace, or over each other, if used as folder names."""
    return [
        str(parent / "victim"),      # absolute: an existing folder outside the workspace
        "../../../../escaped",       # relative escape
        "..", ".",                   # the adapters folder's parent, and the adapters folder itself
        "a/b", "a", "a_b",          # a separator, and ids that slug alike
        "x" * 10_000,               # longer than any file name may be
        "CON", "nul.txt",           # reserved device names on Windows
        "back\\slash", " padded ",
    ]


def write_corpus(path: Path, ids: list[str]) -> None:
    source = generate_dataset(len(ids), 3, seed=0)
    lines = []
    for new_id, old_id in zip(ids, source.persona_ids):
        for d in source.personas[old_id].dialogues:
            lines.append(json.dumps({**d.to_dict(), "persona_id": new_id}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def snapshot(folder: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` but ``skip``: kind, size and modification time."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        if Path(dirpath) == skip:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in dirs + files:
            st = os.lstat(Path(dirpath, name))
            out[str(Path(dirpath, name).relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def shpers(ws: Path, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--workspace", str(ws), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_safe_names_are_distinct_portable_and_stay_inside(tmp_path):
    ids = hostile_ids(tmp_path) + ["A", "a\x00", "é", "e\u0301"]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids), "two ids share a folder"
    assert len({n.lower() for n in names}) == len(ids), "two ids share a folder on a case-blind disk"
    for name in names:
        assert len(name) <= 60 and name not in (".", "..")
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name), name
        assert child(tmp_path, name).parent == tmp_path
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path.parent)
    with pytest.raises(UnsafePathError, match="outside"):
        Workspace(tmp_path).run_dir("link")
    for bad in ("..", ".", "a/b", "/etc", "x\x00"):
        with pytest.raises(UnsafePathError):
            Workspace(tmp_path).run_dir(bad)


def test_validate_refuses_control_characters_in_ids_naming_the_field(tmp_path, capsys):
    for bad, shown in (("nul\x00id", "\\x00"), ("bell\x07", "\\x07"), ("two\nlines", "\\n")):
        data = tmp_path / "bad.jsonl"
        write_corpus(data, ["fine", bad])
        rc, out, err = shpers(tmp_path / "ws", capsys, "data", "validate", str(data))
        assert rc == 2 and out == "", err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "field 'persona_id'" in lines[0] and shown in lines[0], err
        assert f"{data}:" in lines[0]


def test_validate_warns_about_unusual_ids_and_long_messages(tmp_path, capsys):
    data = tmp_path / "corpus.jsonl"
    write_corpus(data, hostile_ids(tmp_path))
    rc, out, err = shpers(tmp_path / "ws", capsys, "data", "validate", str(data), "--max-message-chars", "30")
    assert rc == 0 and out.startswith("ok: 12 personas"), err
    for why in ("path separator", "'..', a folder name", "'.', a folder name", "10000 characters long",
                "reserved device name", "white space", "over 30"):
        assert why in err, (why, err)
    assert "'a'" not in err and "'a_b'" not in err  # ordinary ids pass quietly
    rc, out, err = shpers(tmp_path / "ws", capsys, "data", "validate", str(data), "--max-message-chars", "100000")
    assert "over 100000" not in err


def test_hostile_ids_train_one_adapter_each_and_nothing_outside_the_workspace_changes(tmp_path, shpers_cache, capsys):
    parent = tmp_path / "parent"
    (parent / "victim").mkdir(parents=True)
    (parent / "victim" / "precious.txt").write_text("keep me")
    ws = parent / "deep" / "ws"
    ids = hostile_ids(parent)
    write_corpus(Workspace.open(ws).dataset_path, ids)
    before = snapshot(tmp_path, ws)

    rc, out, err = shpers(ws, capsys, "run", "per_persona_lora", *CLI_TINY)
    assert rc == 0, err
    run_id = out.strip().splitlines()[-1]
    with RunStore(Workspace(ws).db_path) as store:
        run = store.get_run(run_id)
        assert run.status == "finished" and sorted(run.personas) == sorted(ids)  # ids stored as written
        arts = {a.persona_id: a.path for a in store.artefacts(run_id, kind="adapter")}
        assert set(store.persona_scores(run_id)) == set(ids)
    assert set(arts) == set(ids) and len(set(arts.values())) == len(ids), "one adapter folder per persona"
    adapters = Workspace(ws).run_dir(run_id) / "adapters"
    for pid, path in arts.items():
        assert path.parent == adapters and path.name == safe_name(pid)
        assert load_file(str(path / "adapter_model.safetensors"))
    plan = json.loads((Workspace(ws).run_dir(run_id) / "plan.json").read_text())
    assert set(plan) == set(ids) and all(not Path(r["adapter"]).is_absolute() for r in plan.values())
    # What the app shows beside each score names the persona as written, not its folder.
    from shpers_core.jobs.provenance import score_sources

    sources = score_sources(Workspace(ws), run_id)
    assert all(sources[pid] == f"LoRA adapter '{pid}'" for pid in ids), sources
    assert snapshot(tmp_path, ws) == before, "something outside the workspace changed"

    rc, out, err = shpers(ws, capsys, "runs", "delete", run_id, "--yes")
    assert rc == 0, err
    assert not Workspace(ws).run_dir(run_id).exists()
    assert snapshot(tmp_path, ws) == before
    assert (parent / "victim" / "precious.txt").read_text() == "keep me"


def test_a_per_persona_run_is_not_finished_without_one_readable_adapter_of_its_own_per_persona(tmp_path):
    import torch
    from safetensors.torch import save_file

    from shpers_core.jobs.runner import check_persona_adapters
    from shpers_core.training.adapters import AdapterError, save_lora_adapter

    weights = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(2, 8),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(8, 2)}
    store = RunStore(tmp_path / "shpers.sqlite")
    run_id = store.create_run("per_persona_lora", {}, "m", "h", ["a", "a/b", "c"])
    folders = {}
    for pid in ("a", "a/b"):
        folders[pid] = child(tmp_path / "runs" / run_id / "adapters", pid)
        save_lora_adapter(folders[pid], weights, rank=2, lora_alpha=4, target_modules=["q_proj"], base_model="m")
        store.add_artefact(run_id, "adapter", folders[pid], persona_id=pid)
    with pytest.raises(AdapterError, match="no adapter for persona 'c'"):
        check_persona_adapters(store, run_id, ["a", "a/b", "c"])
    check_persona_adapters(store, run_id, ["a", "a/b"])

    # Two personas saved to one folder (what "." did to every other persona when ids were paths): the
    # store keeps one record per folder, so one persona is left without an adapter.
    other = store.create_run("per_persona_lora", {}, "m", "h", ["a", "b"])
    for pid in ("a", "b"):
        store.add_artefact(other, "adapter", folders["a"], persona_id=pid)
    with pytest.raises(AdapterError, match="no adapter for persona 'a'"):
        check_persona_adapters(store, other, ["a", "b"])

    # An unreadable or NaN adapter is not an adapter.
    file = folders["a/b"] / "adapter_model.safetensors"
    file.write_bytes(file.read_bytes()[:30])
    with pytest.raises(AdapterError, match="truncated"):
        check_persona_adapters(store, run_id, ["a", "a/b"])
    # (written by an older version: saving refuses NaN weights now)
    save_file({k: v * float("nan") for k, v in weights.items()}, str(file))
    with pytest.raises(AdapterError, match="NaN"):
        check_persona_adapters(store, run_id, ["a", "a/b"])
    store.close()

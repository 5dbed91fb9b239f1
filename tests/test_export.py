"""``shpers runs export RUN --persona ID --to merged|gguf|peft DIR`` on the tiny model."""

from __future__ import annotations

import errno
import json
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch

from shpers_core.cli.main import main

NEW_TOKENS = 12


@pytest.fixture(scope="module")
def runs(models_cache, tmp_path_factory):
    """A per-persona LoRA run and a learned-soft-prompt run on a small generated dataset."""
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.events import Reporter
    from shpers_core.jobs.runner import run_job
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        ws = Workspace.open(root)
        write_jsonl(generate_dataset(3, 6, seed=3), ws.dataset_path)
        common = {"train.num_epochs": 2, "train.max_length": 128, "train.learning_rate": 2e-2,
                  "eval.max_test_dialogues": 1, "eval.max_new_tokens": 4}
        # float32: a merged bf16 model rounds W + BA to bf16 once, where the tool adds the adapter's
        # output to the base's, so on a random tiny model greedy replies could part by rounding alone.
        lora = run_job(build_spec("per_persona_lora", common, base_model="tiny-qwen2", device="cpu", dtype="float32"),
                       ws, Reporter())
        soft = run_job(build_spec("soft_prompt", {**common, "num_virtual_tokens": 4, "scope": "persona"},
                                  base_model="tiny-qwen2", device="cpu"), ws, Reporter())
        yield ws, lora, soft


def shpers(ws, *argv: str) -> tuple[int, str]:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(["--workspace", str(ws.root), *argv])
    return rc, buf.getvalue()


def _pid(ws, run_id: str) -> str:
    return sorted(json.loads((ws.run_dir(run_id) / "plan.json").read_text()))[0]


def _histories(ws, pid: str):
    from shpers_core.data import load_dataset

    d = load_dataset(ws.dataset_path).personas[pid].dialogues
    return [list(dialogue.messages[:1]) for dialogue in d[:3]]


def test_merged_model_loads_in_transformers_and_replies_as_the_tool(runs, tmp_path, shpers_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shpers_core.jobs.chat import ChatSession
    from shpers_core.models.chat import end_of_turn_ids

    ws, run_id, _ = runs
    pid = _pid(ws, run_id)
    out = tmp_path / "merged"
    rc, text = shpers(ws, "runs", "export", run_id, "--persona", pid, "--to", "merged", str(out))
    assert rc == 0 and "LoRA adapter" in text
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    session = ChatSession(ws, run_id, pid, max_new_tokens=NEW_TOKENS)
    bare = ChatSession(ws, None, pid, base_model="tiny-qwen2", max_new_tokens=NEW_TOKENS)
    differs = 0
    for history in _histories(ws, pid):
        chat = [{"role": m.role, "content": m.text} for m in history]
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 eos_token_id=sorted(end_of_turn_ids(tokenizer)), pad_token_id=tokenizer.pad_token_id)
        reply = tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        assert reply == session.reply(history)
        differs += reply != bare.reply(history)
    assert differs  # the adapter is really in the weights, not just the base model saved again
    info = json.loads((out / "shpers_export.json").read_text())
    assert info["persona"] == pid and info["format"] == "merged" and info["cannot_carry"] == []


def test_gguf_adapter_has_llama_cpp_names_shapes_and_values(runs, tmp_path):
    import gguf
    from safetensors.torch import load_file

    from shpers_core.store import RunStore

    ws, run_id, _ = runs
    pid = _pid(ws, run_id)
    out = tmp_path / "gguf"
    assert shpers(ws, "runs", "export", run_id, "--persona", pid, "--to", "gguf", "--out", str(out))[0] == 0
    reader = gguf.GGUFReader(out / "adapter.gguf")
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["general.architecture"].contents() == "qwen2"
    assert reader.fields["adapter.type"].contents() == "lora"
    with RunStore(ws.db_path) as store:
        folder = {a.persona_id: a.path for a in store.artefacts(run_id, kind="adapter")}[pid]
    cfg = json.loads((Path(folder) / "adapter_config.json").read_text())
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(cfg["lora_alpha"])
    peft = load_file(str(Path(folder) / "adapter_model.safetensors"))
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in peft}
    expected = {f"blk.{i}.attn_{m}.weight.lora_{p}" for i in layers for m in ("q", "v") for p in ("a", "b")}
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == expected
    for i in layers:
        for m, proj in (("q", "q_proj"), ("v", "v_proj")):
            a = peft[f"base_model.model.model.layers.{i}.self_attn.{proj}.lora_A.weight"]
            b = peft[f"base_model.model.model.layers.{i}.self_attn.{proj}.lora_B.weight"]
            ta, tb = tensors[f"blk.{i}.attn_{m}.weight.lora_a"], tensors[f"blk.{i}.attn_{m}.weight.lora_b"]
            # ggml lists dimensions innermost first: A is (in, rank), B is (rank, out), as llama.cpp checks them.
            assert list(ta.shape) == [a.shape[1], cfg["r"]] and list(tb.shape) == [cfg["r"], b.shape[0]]
            assert torch.equal(torch.from_numpy(ta.data.copy()).reshape(a.shape), a.float())
            assert torch.equal(torch.from_numpy(tb.data.copy()).reshape(b.shape), b.float())
    modelfile = (out / "Modelfile").read_text()
    assert "ADAPTER ./adapter.gguf" in modelfile and "FROM ./base.gguf" in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    info = json.loads((out / "shpers_export.json").read_text())
    assert any("shpers has no GGUF of tiny-qwen2" in c for c in info["cannot_carry"])


def test_soft_prompt_run_says_what_each_format_cannot_carry(runs, tmp_path):
    ws, _, run_id = runs
    pid = _pid(ws, run_id)
    rc, text = shpers(ws, "runs", "export", run_id, "--persona", pid, "--to", "gguf", str(tmp_path / "g"))
    assert rc == 0 and "cannot carry: the learned soft prompt" in text
    assert (tmp_path / "g" / "adapter.gguf").is_file()  # the unified LoRA under it still goes
    rc, text = shpers(ws, "runs", "export", run_id, "--persona", pid, "--to", "peft", str(tmp_path / "p"))
    assert rc == 0 and "cannot carry" not in text
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"adapter", "soft_prompt", "shpers_export.json"}
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(tmp_path / "p" / "soft_prompt")).peft_type == "PROMPT_TUNING"


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("shpers: error: "), err
    return err


def test_bad_export_folders_are_one_line_and_leave_nothing(runs, tmp_path, capsys, monkeypatch):
    ws, run_id, _ = runs
    pid = _pid(ws, run_id)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--persona", pid, "--to", "peft",
                 str(a_file)]) == 2
    assert "is a file" in _err(capsys)
    missing = tmp_path / "no" / "such" / "out"
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--persona", pid, "--to", "peft",
                 "--out", str(missing)]) == 2
    assert "parent folder" in _err(capsys) and not (tmp_path / "no").exists()
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--persona", "nobody", "--to", "peft",
                 str(tmp_path / "x")]) == 2
    assert "no persona 'nobody'" in _err(capsys)

    import shutil

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", full)
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--persona", pid, "--to", "peft",
                 str(tmp_path / "full")]) == 2
    assert "the disk is full" in _err(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no export folder, no temporary left


def test_table_export_out_errors_are_one_line(runs, tmp_path, capsys):
    ws, run_id, _ = runs
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--out", str(tmp_path / "no" / "t.md")]) == 2
    assert "parent folder" in _err(capsys)
    assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--out", str(tmp_path)]) == 2
    assert "is a folder" in _err(capsys)


def test_runs_list_and_show_json(runs):
    ws, run_id, soft = runs
    rc, out = shpers(ws, "runs", "list", "--json")
    listed = json.loads(out)
    assert rc == 0 and {r["id"] for r in listed} >= {run_id, soft}
    row = next(r for r in listed if r["id"] == run_id)
    assert row["method"] == "per_persona_lora" and row["status"] == "finished"
    assert 0 < row["metrics"]["all"]["embedding_similarity"] <= 1
    rc, out = shpers(ws, "runs", "show", run_id, "--json")
    shown = json.loads(out)
    assert shown["params"]["method"] == "per_persona_lora"
    assert set(shown["persona_scores"]) == set(shown["personas"])


def test_export_folder_is_readable_like_any_other_folder(runs, tmp_path):
    import os
    import stat

    ws, run_id, _ = runs
    out = tmp_path / "p"
    assert shpers(ws, "runs", "export", run_id, "--persona", _pid(ws, run_id), "--to", "peft", str(out))[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask

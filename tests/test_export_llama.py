"""GGUF export against llama.cpp's own layout on the embedded SmolLM2 (a llama-architecture model)."""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from io import StringIO

import pytest
import torch

from shpers_core.cli.main import main


@pytest.mark.slow
def test_query_and_key_rows_are_permuted_as_in_the_embedded_base_gguf(smollm2_base):
    """The base GGUF (written by llama.cpp's converter) holds W_q and W_k with permuted rows; a LoRA's B
    must be permuted the same way for W + B A to match, so check our permutation against that file."""
    import gguf

    from shpers_core.export.gguf_lora import _llama_permute, lora_tensors
    from shpers_core.models.smollm2 import gguf_path

    config = smollm2_base.model.config
    reader = gguf.GGUFReader(gguf_path())
    tensors = {t.name: t for t in reader.tensors}
    layer = smollm2_base.model.model.layers[3].self_attn
    for name, weight, heads in (("attn_q", layer.q_proj.weight, config.num_attention_heads),
                                ("attn_k", layer.k_proj.weight, config.num_key_value_heads)):
        t = tensors[f"blk.3.{name}.weight"]
        stored = torch.from_numpy(gguf.dequantize(t.data, t.tensor_type).copy()).reshape(weight.shape)
        assert torch.allclose(_llama_permute(weight.detach().float(), heads), stored, atol=1e-6)
        assert not torch.allclose(weight.detach().float(), stored, atol=1e-3)  # the permutation matters
    # And the adapter's B rows follow it: permuted(B) A == permuted(B A).
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 576, generator=g), torch.randn(576, 8, generator=g)
    state = {"base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight": a,
             "base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight": b}
    out = lora_tensors(state, config)
    assert torch.allclose(out["blk.3.attn_q.weight.lora_b"] @ out["blk.3.attn_q.weight.lora_a"],
                          _llama_permute(b @ a, config.num_attention_heads), atol=1e-4)


@pytest.fixture(scope="module")
def smollm2_run(models_cache, tmp_path_factory):
    """A short per-persona LoRA run on SmolLM2 with a large learning rate, so the adapter changes replies."""
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.events import Reporter
    from shpers_core.jobs.runner import run_job
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace

    root = tmp_path_factory.mktemp("export-smollm2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHPERS_CACHE", str(models_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        ws = Workspace.open(root)
        dataset = generate_dataset(2, 4, seed=5)
        write_jsonl(dataset, ws.dataset_path)
        spec = build_spec("per_persona_lora", {"train.num_epochs": 2, "train.max_length": 96,
                                               "train.learning_rate": 3e-3, "train.warmup_ratio": 0.0,
                                               "eval.max_test_dialogues": 1, "eval.max_new_tokens": 4},
                          base_model="smollm2-135m-instruct", device="cpu", dtype="float32",
                          personas=dataset.persona_ids[:1])
        run_id = run_job(spec, ws, Reporter())
        yield ws, run_id, dataset.persona_ids[0], dataset


@pytest.mark.slow
def test_llama_cpp_gives_the_tools_greedy_replies(smollm2_run, tmp_path, shpers_cache):
    llama_cpp = pytest.importorskip("llama_cpp")
    from shpers_core.jobs.chat import ChatSession

    ws, run_id, pid, dataset = smollm2_run
    out = tmp_path / "gguf"
    buf = StringIO()
    with redirect_stdout(buf):
        assert main(["--workspace", str(ws.root), "runs", "export", run_id, "--persona", pid, "--to", "gguf",
                     str(out)]) == 0
    info = json.loads((out / "shpers_export.json").read_text())
    assert info["cannot_carry"] == []
    base_file = next(p for p in out.iterdir() if p.name.startswith("SmolLM2"))
    llm = llama_cpp.Llama(model_path=str(base_file), lora_path=str(out / "adapter.gguf"), n_ctx=512,
                          n_threads=2, seed=0, verbose=False)
    session = ChatSession(ws, run_id, pid, max_new_tokens=16)
    same = 0
    histories = [list(d.messages[:1]) for d in dataset.personas[pid].dialogues[:3]]
    for history in histories:
        ids = session.base.tokenizer.apply_chat_template(
            [{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}]
            + [{"role": m.role, "content": m.text} for m in history], add_generation_prompt=True, tokenize=False)
        got = llm.create_completion(ids, max_tokens=16, temperature=0.0, top_k=1, stop=["<|im_end|>"])
        same += got["choices"][0]["text"].strip() == session.reply(history)
    # Q4_1 matrix products in llama.cpp against the dequantized float32 weights in shpers: most replies agree
    # word for word; one near-tie may fall the other way.
    assert same >= len(histories) - 1

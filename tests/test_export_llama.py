"""GGUF export against llama.cpp's own layout on the embedded SmolLM2 (a llama-architecture model)."""

from __future__ import annotations

import pytest
import torch


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


def _random_lora(config, b_std: float = 0.05) -> dict[str, torch.Tensor]:
    """A rank-8 LoRA on every query and value projection, large enough to move the logits by a few units
    (well above what 4-bit quantisation moves them), in PEFT's naming."""
    g = torch.Generator().manual_seed(0)
    kv_width = config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    state = {}
    for i in range(config.num_hidden_layers):
        for proj, width in (("q_proj", config.hidden_size), ("v_proj", kv_width)):
            key = f"base_model.model.model.layers.{i}.self_attn.{proj}"
            state[f"{key}.lora_A.weight"] = torch.randn(8, config.hidden_size, generator=g) / config.hidden_size ** 0.5
            state[f"{key}.lora_B.weight"] = torch.randn(width, 8, generator=g) * b_std
    return state


@pytest.mark.slow
def test_llama_cpp_applies_the_exported_adapter_as_the_tool_does(smollm2_base, tmp_path, monkeypatch):
    """llama.cpp runs the 4-bit base GGUF with the exported adapter; shpers the dequantized float32 base with
    the LoRA. Quantisation moves the logits a little either way, so the checks are that the greedy next token
    agrees and that the LoRA changes llama.cpp's logits as it changes the tool's (correlation of the two
    changes), clearly more so than an adapter written without llama.cpp's query/key row order."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np

    import shpers_core.export as export
    import shpers_core.export.gguf_lora as gguf_lora
    from shpers_core.export.merged import merged_model
    from shpers_core.models import DEFAULT_MODEL
    from shpers_core.training.adapter_types import Adapter
    from shpers_core.training.adapters import save_lora_adapter

    base = smollm2_base
    state = _random_lora(base.model.config)
    folder = save_lora_adapter(tmp_path / "peft", state, rank=8, lora_alpha=16.0, target_modules=["q_proj", "v_proj"],
                               base_model=DEFAULT_MODEL)
    out = tmp_path / "gguf"
    out.mkdir()
    result = export.ExportResult(out, "gguf")
    export._write_gguf(out, base, DEFAULT_MODEL, Adapter(state, 2.0), folder, "You are Maya's assistant.", result)
    base_file = next(p for p in out.iterdir() if p.name.startswith("SmolLM2"))
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{base_file.name}" in modelfile and 'SYSTEM """You are Maya\'s assistant."""' in modelfile
    with monkeypatch.context() as mp:
        mp.setattr(gguf_lora, "_llama_permute", lambda rows, heads: rows)
        gguf_lora.write_gguf_lora(tmp_path / "unpermuted.gguf", state, 16.0, base.model.config, "x")
    bare, with_lora, unpermuted = (
        llama_cpp.Llama(model_path=str(base_file), n_ctx=128, n_threads=2, verbose=False, logits_all=True, **extra)
        for extra in ({}, {"lora_path": str(out / "adapter.gguf")}, {"lora_path": str(tmp_path / "unpermuted.gguf")}))
    tuned = merged_model(base.model, state, 2.0)

    def last_logits(llm, ids):
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[llm.n_tokens - 1])

    correlations, wrong = [], []
    for text in ("Turn on the kitchen lights", "Set the thermostat to 21 degrees", "What's the weather like?"):
        chat = [{"role": "user", "content": text}]
        ids = list(base.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"])
        with torch.no_grad():
            ours_base = base.model(torch.tensor([ids])).logits[0, -1].numpy()
            ours = tuned(torch.tensor([ids])).logits[0, -1].numpy()
        theirs_base, theirs, theirs_wrong = (last_logits(llm, ids) for llm in (bare, with_lora, unpermuted))
        assert ours.argmax() == theirs.argmax()
        correlations.append(np.corrcoef(ours - ours_base, theirs - theirs_base)[0, 1])
        wrong.append(np.corrcoef(ours - ours_base, theirs_wrong - theirs_base)[0, 1])
    # Measured: 0.95-0.97 with the permutation, 0.71-0.83 without.
    assert np.mean(correlations) > 0.9 and np.mean(correlations) > np.mean(wrong) + 0.08, (correlations, wrong)

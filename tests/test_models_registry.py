"""load_base: the named models, folders and hub ids, their errors, and the embedded SmolLM2 end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2ForCausalLM
from transformers import modeling_gguf_pytorch_utils as gguf_utils

from shpers_core.data.schema import Message
from shpers_core.models import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    ModelError,
    build_tiny_qwen2,
    decode_reply,
    describe_device,
    describe_models,
    encode_dialogue,
    encode_prompt,
    load_base,
)
from shpers_core.models.tiny import QWEN25_05B_SHAPE, qwen2_config
from shpers_core.training.batching import collate

CORPUS = [f"Set the {room} lights to {n}% and the thermostat to {18 + n % 6}°C, please."
          for room in ("kitchen", "hallway", "bedroom", "office") for n in range(0, 100, 5)]


def test_tiny_qwen2_is_deterministic_and_small(tmp_path):
    a = build_tiny_qwen2(tmp_path / "a", CORPUS, seed=0)
    b = build_tiny_qwen2(tmp_path / "b", CORPUS, seed=0)
    c = build_tiny_qwen2(tmp_path / "c", CORPUS, seed=1)
    wa, wb, wc = (load_file(d / "model.safetensors") for d in (a, b, c))
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["model.embed_tokens.weight"], wc["model.embed_tokens.weight"])
    assert any(k.endswith("q_proj.weight") for k in wa) and any(k.endswith("v_proj.weight") for k in wa)


def test_tiny_qwen2_through_the_registry(tiny_base, shpers_cache):
    assert tiny_base.name == "tiny-qwen2" and tiny_base.device == "cpu" and tiny_base.dtype == "float32"
    assert 100_000 < tiny_base.num_parameters < 1_000_000
    assert not tiny_base.model.training
    assert tiny_base.source.startswith(str(shpers_cache / "models" / "tiny-qwen2-"))
    tok = tiny_base.tokenizer
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert 1_000 <= len(tok) <= 2_000
    ex = encode_dialogue(tok, [Message("user", "Lights off"), Message("assistant", "Lights are off.")])
    batch = collate([ex], tok.pad_token_id)
    with torch.no_grad():
        out = tiny_base.model(input_ids=batch["input_ids"], labels=batch["labels"])
    assert torch.isfinite(out.loss)


def test_the_head_gets_contiguous_rows_when_logits_are_cut(tiny_base):
    # A strided bf16 slice made torch copy SmolLM2's head per row on the CPU: 50x slower.
    seen = []
    hook = tiny_base.model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    try:
        with torch.no_grad():
            tiny_base.model(input_ids=torch.tensor([[5, 6, 7], [8, 9, 10]]), logits_to_keep=1)
    finally:
        hook.remove()
    assert seen == [True]


def test_cuda_attention_skips_the_backend_that_plans_every_shape(monkeypatch, shpers_cache):
    """On an H200, cuDNN attention built a plan per new batch shape: a first pass 4x slower."""
    from shpers_core.models import device as device_mod
    from shpers_core.models import registry

    calls = []
    monkeypatch.setattr(registry, "prepare_attention", calls.append)
    registry.load_base("tiny-qwen2", device="cpu", dtype="float32")
    assert calls == ["cpu"]  # every load passes its device through

    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        device_mod.prepare_attention("cpu")
        assert torch.backends.cuda.cudnn_sdp_enabled()  # the CPU leaves CUDA's settings alone
        device_mod.prepare_attention("cuda:0")
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)


def test_qwen_shape_has_qwen25_05b_parameter_count(tiny_base):
    with torch.device("meta"):
        model = Qwen2ForCausalLM(qwen2_config(tiny_base.tokenizer, QWEN25_05B_SHAPE))
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B's published size


def test_chooser_lists_every_named_model():
    names = [m["name"] for m in describe_models()]
    assert names == list(MODEL_NAMES) and DEFAULT_MODEL in names
    assert all(m["description"] and m["source"] for m in describe_models())
    assert describe_device("cpu").startswith("cpu (")


def test_missing_folder(tmp_path, shpers_cache):
    with pytest.raises(ModelError, match="model folder not found: .*nope"):
        load_base(str(tmp_path / "nope"))


def test_folder_without_config(tmp_path, shpers_cache):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_base(str(tmp_path))


def test_folder_of_a_non_causal_model(tmp_path, shpers_cache):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelError, match="not a causal language model .*'t5'"):
        load_base(str(tmp_path))


def test_causal_config_without_weights(tmp_path, tiny_base, shpers_cache):
    tiny_base.model.config.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_base.source).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="could not load model"):
        load_base(str(tmp_path))


def test_saved_folder_loads(tmp_path, tiny_base, shpers_cache):
    copy = load_base(tiny_base.source, dtype="bf16")
    assert copy.dtype == "bfloat16" and copy.num_parameters == tiny_base.num_parameters


def test_unreachable_hub_id(shpers_cache):
    with pytest.raises(ModelError, match=r"could not load 'shpers-test/no-such-model' from the Hugging Face hub \(offline\?\)"):
        load_base("shpers-test/no-such-model")


def test_unknown_name_bad_dtype_and_device(shpers_cache):
    with pytest.raises(ModelError, match="unknown model 'smollm'"):
        load_base("smollm")
    with pytest.raises(ModelError, match="unknown dtype"):
        load_base("tiny-qwen2", dtype="int3")
    with pytest.raises(ModelError, match="unknown device"):
        load_base("tiny-qwen2", device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            load_base("tiny-qwen2", device="cuda")


@pytest.mark.slow
def test_smollm2_is_converted_once_then_loaded_from_the_cache(shpers_cache, monkeypatch):
    base = load_base(DEFAULT_MODEL, device="cpu")
    folder = shpers_cache / "models" / DEFAULT_MODEL
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert base.tokenizer.chat_template and base.num_parameters > 100_000_000

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", no_gguf)
    again = load_base(DEFAULT_MODEL, device="cpu")
    weights = dict(again.model.named_parameters())
    assert all(torch.equal(p, weights[k]) for k, p in base.model.named_parameters())


@pytest.mark.slow
def test_smollm2_chats_and_takes_a_lora_step(shpers_cache):
    from peft import LoraConfig, get_peft_model

    base = load_base(DEFAULT_MODEL, device="cpu")
    tok, model = base.tokenizer, base.model
    prompt = encode_prompt(tok, [Message("user", "Say hello in one word.")])
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert decode_reply(tok, out[0, len(prompt):])

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.train()
    lora = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in k for k in lora)
    ex = encode_dialogue(tok, [Message("user", "Turn on the lights"), Message("assistant", "The lights are on.")])
    batch = collate([ex], tok.pad_token_id)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model(**batch).loss
    loss.backward()
    optim.step()
    assert torch.isfinite(loss)
    after = dict(model.named_parameters())
    assert any(not torch.equal(v, after[k]) for k, v in lora.items())


def test_listing_models_does_not_import_transformers():
    code = ("import sys, shpers_core.models as m; m.describe_models(); m.describe_device(); "
            "assert 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

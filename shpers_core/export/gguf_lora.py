"""A PEFT LoRA as a GGUF LoRA adapter in llama.cpp's own layout (as its ``convert_lora_to_gguf.py`` writes).

Keys: ``general.type = "adapter"``, ``general.architecture`` (must match the base GGUF),
``adapter.type = "lora"``, ``adapter.lora.alpha``. Each adapted weight ``W`` of the base (GGUF name such
as ``blk.3.attn_q.weight``) gets ``<name>.lora_a`` with PEFT's A [rank, in] and ``<name>.lora_b`` with
B [out, rank], in float32. llama.cpp's converter stores the query and key weights of llama-architecture
models with their rows permuted for its rotary embedding, so the rows of their B are permuted the same way.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import torch

from shpers_core.export.folder import ExportError

# transformers model_type -> llama.cpp architecture; these are the ones the tool's models use.
ARCHITECTURES = {"llama": "LLAMA", "qwen2": "QWEN2"}


def gguf_arch(config) -> str:
    name = ARCHITECTURES.get(getattr(config, "model_type", ""))
    if name is None:
        raise ExportError(f"GGUF export supports the {', '.join(ARCHITECTURES)} architectures, not "
                          f"{getattr(config, 'model_type', '?')!r}; export --to merged or peft instead")
    return gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, name)]


def _llama_permute(rows: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's ``LlamaModel.permute`` on the output rows of a weight (here, of LoRA B)."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def lora_tensors(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """GGUF tensor name -> float32 tensor for every A and B of a PEFT LoRA state dict."""
    arch = getattr(gguf.MODEL_ARCH, ARCHITECTURES[config.model_type])
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    out = {}
    for key, tensor in sorted(state.items()):
        hf = key.removeprefix("base_model.model.")
        if ".lora_A." in hf:
            part, module = "lora_a", hf.split(".lora_A.")[0]
        elif ".lora_B." in hf:
            part, module = "lora_b", hf.split(".lora_B.")[0]
        else:
            raise ExportError(f"adapter tensor {key!r} is neither LoRA A nor B; it cannot go into a GGUF LoRA")
        base_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if base_name is None:
            raise ExportError(f"adapter targets {module!r}, which llama.cpp's {config.model_type} layout has no "
                              "tensor for")
        t = tensor.detach().to(torch.float32).cpu()
        if part == "lora_b" and config.model_type == "llama" and module.endswith((".q_proj", ".k_proj")):
            heads = config.num_attention_heads if module.endswith(".q_proj") else config.num_key_value_heads
            t = _llama_permute(t, heads)
        out[f"{base_name}.{part}"] = t.contiguous()
    return out


def write_gguf_lora(path: Path, state: dict[str, torch.Tensor], lora_alpha: float, config, name: str) -> Path:
    """Write the adapter file at ``path``."""
    arch = gguf_arch(config)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora_alpha))
    writer.add_name(name)
    for tensor_name, tensor in lora_tensors(state, config).items():
        writer.add_tensor(tensor_name, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def modelfile(base_file: str, adapter_file: str | None, system: str, stop: list[str]) -> str:
    """An Ollama Modelfile: base GGUF, LoRA adapter, the ChatML template shpers renders, greedy decoding."""
    def quoted(text: str) -> str:
        return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'

    lines = [f"FROM ./{base_file}"]
    if adapter_file:
        lines.append(f"ADAPTER ./{adapter_file}")
    # Ollama puts SYSTEM into .Messages as the first message when a template ranges over them.
    lines.append(f"TEMPLATE {quoted(CHATML_TEMPLATE)}")
    if system:
        lines.append(f"SYSTEM {quoted(system)}")
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    # shpers decodes greedily; temperature 0 gives Ollama's closest equivalent.
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"

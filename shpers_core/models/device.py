"""Which device and dtype a model runs on, chosen from what the machine has."""

from __future__ import annotations

import torch

from .errors import ModelError

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device() -> str:
    """``cuda`` if a GPU is usable, then ``mps``, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def check_device(device: str) -> str:
    """``device`` normalised, or ModelError when this machine does not have it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"unknown device '{device}' (use cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device '{device}' requested but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    elif dev.type == "mps" and not _mps_available():
        raise ModelError(f"device '{device}' requested but Apple MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"unsupported device '{device}' (use cpu, cuda, cuda:N or mps)")
    return str(dev)


def cpu_supports_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16).

    Read from the kernel's CPU flags: torch's own capability string stops at AVX512 and does not
    say whether AMX is there. Without these units bf16 is emulated and slower than float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def pick_dtype(device: str) -> str:
    """The dtype of the frozen base model: bf16 where the hardware computes in it, else fp16 on CUDA
    without bf16 (trained weights stay float32 and the loss is scaled), else float32.

    bf16 on CUDA with bf16 support and on CPUs with AMX or AVX512-BF16; MPS gets float32 (fp16 there
    has no loss scaler, and the models here are small).
    """
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu" and cpu_supports_bf16():
        return "bfloat16"
    return "float32"


def prepare_attention(device: str) -> None:
    """On CUDA, take cuDNN out of the attention backends that ``scaled_dot_product_attention`` tries.

    torch 2.11 sends masked attention to cuDNN first on Hopper and newer GPUs, and cuDNN builds an
    execution plan for every new shape. Training batches and the evaluator's KV caches change shape
    at nearly every step, so each step paid for a plan: on an H200 (``make gpu-check``, the 0.5B
    shape in bf16) a unified run's first pass took 5.7 s against 1.2-1.4 s once its shapes had been
    seen, and a first evaluation 11.4 s against 2.9 s, with ``_cudnn_attention_forward`` in the
    profile. Flash and memory-efficient attention need no plan. The switch is process-wide.
    """
    if device.startswith("cuda"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for ``name`` (``float32``, ``bf16``, ...), or ModelError."""
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ModelError(f"unknown dtype '{name}' (use float32, bfloat16 or float16)") from None


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def describe_device(device: str | None = None) -> str:
    """A short label for a status bar, e.g. ``cpu (2 threads)`` or ``cuda: NVIDIA H100``."""
    device = device or pick_device()
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"{device}: {torch.cuda.get_device_name(index)}"
    if device == "mps":
        return "mps: Apple GPU"
    return f"cpu ({torch.get_num_threads()} threads)"

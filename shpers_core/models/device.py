"""Which device and dtype a model runs on, chosen from what the machine has."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

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


def cpu_flags() -> set[str]:
    """The kernel's CPU flags (``/proc/cpuinfo``); empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16).

    Read from the kernel's CPU flags: torch's own capability string stops at AVX512 and does not
    say whether AMX is there. Without these units bf16 is emulated and slower than float32.
    """
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


# bf16 must multiply this much faster than float32 before a CPU run holds its model in bf16: the
# products are about half of a training step, and bf16 adds casts. On an AMD EPYC with
# AVX512-BF16, products at 2.6x gave training 1.9x; on an Intel Xeon VM that shows AVX512-BF16
# but not AMX, products at 0.54x gave training 0.80x.
MIN_CPU_BF16_SPEEDUP = 1.5


PROBE_ROUNDS = 5


@functools.cache
def cpu_bf16_speedup() -> float:
    """How much faster this CPU multiplies a model-sized matrix product in bf16 than in float32.

    Measured once a process (about 0.4 s): the flags say an instruction exists, not that it is fast.
    A virtual machine can show AVX512-BF16 and hide AMX, and there oneDNN's bf16 products ran at half
    float32's rate. 0.0 where the CPU has no bf16 instructions at all (bf16 would be emulated).

    The two dtypes take turns for :data:`PROBE_ROUNDS` short rounds and each keeps its best: other work on
    the cores (the work the app does as it opens) only slows a round. With one round each, the app once
    picked bf16 on a CPU where bf16 products run at 0.55x float32's.
    """
    if not cpu_supports_bf16():
        return 0.0
    shape = (512, 576, 1536)  # a SmolLM2 MLP product
    best = {torch.bfloat16: 0.0, torch.float32: 0.0}
    for _ in range(PROBE_ROUNDS):
        for dtype in best:
            best[dtype] = max(best[dtype], matmul_rate(dtype, shape, "cpu", 0.02))
    return best[torch.bfloat16] / best[torch.float32]


def matmul_rate(dtype: torch.dtype, shape: tuple[int, int, int], device: str, seconds: float = 0.5) -> float:
    """FLOP/s of ``[m, k] @ [k, n]`` products in ``dtype`` on ``device``, timed for about ``seconds``."""
    m, k, n = shape
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device, dtype)
    b = torch.randn(k, n, generator=g).to(device, dtype)
    for _ in range(3):
        torch.mm(a, b)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        count += 1
        if count % 4 == 0:
            sync()
            if time.perf_counter() - start >= seconds:
                break
    return 2.0 * m * k * n * count / (time.perf_counter() - start)


def choose_cpu_dtype(flags: set[str], bf16_speedup: Callable[[], float]) -> str:
    """bf16 where the CPU has AMX, or AVX512-BF16 whose products ``bf16_speedup()`` finds at least
    :data:`MIN_CPU_BF16_SPEEDUP` times float32's; float32 otherwise."""
    if "amx_bf16" in flags:
        return "bfloat16"
    if "avx512_bf16" in flags and bf16_speedup() >= MIN_CPU_BF16_SPEEDUP:
        return "bfloat16"
    return "float32"


def pick_dtype(device: str) -> str:
    """The dtype of the frozen base model: bf16 where the hardware computes in it, else fp16 on CUDA
    without bf16 (trained weights stay float32 and the loss is scaled), else float32.

    bf16 on CUDA with bf16 support and on CPUs where it is faster (:func:`choose_cpu_dtype`); MPS gets
    float32 (fp16 there has no loss scaler, and the models here are small).
    """
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu":
        return choose_cpu_dtype(cpu_flags(), cpu_bf16_speedup)
    return "float32"


def dtype_reason(device: str) -> str:
    """Why :func:`pick_dtype` holds the model in its dtype on ``device``, in words for logs and the bench."""
    if device.startswith("cuda"):
        return "the GPU computes in bf16" if torch.cuda.is_bf16_supported() else "the GPU has no bf16: fp16, loss scaled"
    if device != "cpu":
        return f"{device} runs float32"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "the CPU has AMX"
    if "avx512_bf16" not in flags:
        return "the CPU has no bf16 instructions"
    return f"the CPU's AVX512-BF16 products run at {cpu_bf16_speedup():.2f}x float32's; bf16 from {MIN_CPU_BF16_SPEEDUP}x"


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


def automatic_choice() -> tuple[str, str, str]:
    """What a job with neither device nor dtype set runs on here: (device, dtype, why that dtype).

    On a CPU with AVX512-BF16 this times a matrix product (about 0.2 s, once a process).
    """
    device = pick_device()
    return device, pick_dtype(device), dtype_reason(device)


def describe_device(device: str | None = None) -> str:
    """A short label for a status bar, e.g. ``cpu (2 threads)`` or ``cuda: NVIDIA H100``."""
    device = device or pick_device()
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"{device}: {torch.cuda.get_device_name(index)}"
    if device == "mps":
        return "mps: Apple GPU"
    return f"cpu ({torch.get_num_threads()} threads)"

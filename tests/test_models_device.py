"""Which dtype a CPU run holds its base model in: bf16 only where it is faster there."""

from __future__ import annotations

import pytest
import torch

from shpers_core.models import device


def never_measured() -> float:
    raise AssertionError("the bf16 speed was measured where the flags decide")


def test_amx_holds_the_model_in_bf16_without_measuring():
    assert device.choose_cpu_dtype({"amx_bf16", "amx_tile", "avx512_bf16"}, never_measured) == "bfloat16"


def test_no_bf16_instructions_means_float32_without_measuring():
    assert device.choose_cpu_dtype({"avx2", "fma", "avx512f"}, never_measured) == "float32"


@pytest.mark.parametrize(("speedup", "dtype"), [(0.54, "float32"), (1.2, "float32"), (2.6, "bfloat16")])
def test_avx512_bf16_without_amx_is_used_only_where_its_products_are_faster(speedup, dtype):
    # 0.54x: an Intel Xeon VM that shows AVX512-BF16 and hides AMX (bf16 training ran at 0.80x float32's);
    # 2.6x: an AMD EPYC with AVX512-BF16 (bf16 training 1.9x).
    assert device.choose_cpu_dtype({"avx512f", "avx512_bf16"}, lambda: speedup) == dtype


def test_runs_and_logs_say_why_a_cpu_with_slow_bf16_runs_float32(monkeypatch):
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 0.54)
    assert device.pick_dtype("cpu") == "float32"
    assert "0.54x float32's" in device.dtype_reason("cpu")
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2"})
    assert device.dtype_reason("cpu") == "the CPU has no bf16 instructions"


def test_the_measured_speedup_is_a_ratio_only_where_bf16_instructions_exist():
    speedup = device.cpu_bf16_speedup()
    if device.cpu_supports_bf16():
        assert 0.05 < speedup < 50
    else:
        assert speedup == 0.0


def test_a_round_slowed_by_other_work_does_not_flip_the_choice(monkeypatch):
    # bf16 at half float32's rate, but float32's first round lost to another thread's work (a tenth of its
    # rate): one round each would read bf16 as 5x faster.
    rounds = {torch.bfloat16: iter([100.0] * 9), torch.float32: iter([20.0] + [200.0] * 9)}
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(device, "matmul_rate", lambda dtype, *_a, **_k: next(rounds[dtype]))
    device.cpu_bf16_speedup.cache_clear()
    try:
        assert device.cpu_bf16_speedup() == 0.5
        assert device.choose_cpu_dtype(device.cpu_flags(), device.cpu_bf16_speedup) == "float32"
    finally:
        device.cpu_bf16_speedup.cache_clear()


def test_a_run_set_to_a_dtype_slower_here_says_what_automatic_would_take(monkeypatch):
    from types import SimpleNamespace

    from shpers_core.events import CollectingReporter
    from shpers_core.jobs.runner import record_precision
    from shpers_core.jobs.spec import build_spec

    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 0.54)
    store = SimpleNamespace(update_run=lambda *_a, **_k: None)

    def line(dtype: str | None, held: str) -> str:
        reporter = CollectingReporter()
        record_precision(store, "r1", build_spec("unified_lora", dtype=dtype),
                         SimpleNamespace(name="m", dtype=held, device="cpu"), reporter)
        return reporter.of_kind("log")[0].message

    assert "in bfloat16 on cpu (set in the run; automatic would take float32: the CPU's AVX512-BF16 products run at " \
           "0.54x float32's" in line("bfloat16", "bfloat16")
    assert "in float32 on cpu (set in the run)" in line("float32", "float32")
    assert "in float32 on cpu (the CPU's AVX512-BF16 products run at 0.54x" in line(None, "float32")

"""``make gpu-check`` on a machine without a GPU: it says so, runs its CPU part, writes both reports, exits 0."""

import json

import pytest
import torch


@pytest.mark.slow
def test_gpu_check_without_a_gpu_runs_its_cpu_part(shpers_cache, tmp_path, monkeypatch, capsys):
    from shpers_core import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("SHPERS_SKIP_EMBEDDING", "1")
    assert gpu_check.main([str(tmp_path / "report")]) == 0
    assert "No GPU is present" in capsys.readouterr().out
    md = (tmp_path / "report" / "report.md").read_text()
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "No GPU is present" in md and "| unified_lora |" in md and "| per_persona_lora |" in md
    assert data["gpu"] is None
    assert data["runs"]["per_persona_lora"]["train_tokens_per_s"] > 0
    assert data["runs"]["unified_lora"]["eval_turns_per_s"] > 0
    assert data["bench_small"]["batched_vs_unified"] > 0
    quality = data["quality"]  # the same unified run in float32 and bf16
    assert quality["dtype"] == "bfloat16" and all(v > 0 for v in quality["val_loss"].values())
    assert quality["val_loss_relative_difference"] >= 0 and len(quality["ci"]) == 2
    assert "bfloat16 against float32" in md and "final validation loss" in md


def test_a_failing_section_is_reported_and_the_others_still_run(shpers_cache, tmp_path, monkeypatch):
    """Device time is short: one broken section must leave the others' figures and its own traceback."""
    from shpers_core import gpu_check

    def broken(*_args, **_kwargs):
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("SHPERS_SKIP_EMBEDDING", "1")
    monkeypatch.setattr(gpu_check, "_quality_section", broken)
    assert gpu_check.main([str(tmp_path / "r"), "--only", "quality,runs"]) == 1
    md = (tmp_path / "r" / "report.md").read_text()
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "quality: FAILED" in md and "same device" in data["failed"]["quality"]
    assert data["runs"]["unified_lora"]["train_tokens_per_s"] > 0 and "bench_small" not in data
    assert "Failed: quality." in md


def test_an_unknown_section_is_refused(tmp_path, capsys):
    from shpers_core import gpu_check

    with pytest.raises(SystemExit):
        gpu_check.main([str(tmp_path / "r"), "--only", "bench,runs"])
    assert "unknown section(s) bench" in capsys.readouterr().err

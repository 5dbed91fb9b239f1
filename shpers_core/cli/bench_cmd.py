"""``shpers bench``: the machine's matrix-product limit, then the real trainers and evaluator against it."""

from __future__ import annotations

import argparse
import sys

from shpers_core.bench import TARGETS, TODAY_EVAL_BATCH, BenchResult, run_bench
from shpers_core.cli.commands import command_help
from shpers_core.distributed.bench import ray_overhead
from shpers_core.errors import UserError
from shpers_core.events import Event, Reporter
from shpers_core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help=command_help("bench"),
        description="In one process: the matrix-product rate in float32 and bf16; then, on dialogues of the "
                    "dataset and in each dtype, (a) N persona adapters trained together against one unified "
                    "LoRA, (b) the N adapters one after another, (c) evaluation with each dialogue's cache "
                    "reused against encoding every turn's prompt whole (today's path), (d) mixed-adapter "
                    "evaluation against one persona at a time. Prints medians, ratios and their targets.")
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model name, folder or hub id (default smollm2-135m-instruct)")
    parser.add_argument("--personas", type=int, default=16, metavar="N", help="persona adapters (default 16)")
    parser.add_argument("--train-dialogues", "--examples-per-persona", dest="train_dialogues", type=int, default=2,
                        metavar="N", help="training dialogues per persona (default 2)")
    parser.add_argument("--test-dialogues", type=int, default=1, metavar="N",
                        help="test dialogues per persona, every turn evaluated (default 1)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N",
                        help="dialogues per optimiser step and adapter (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=24, metavar="N",
                        help="longest generated reply (default 24)")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="timed repeats; medians are reported (default 1)")
    parser.add_argument("--dtype", action="append", choices=("float32", "bfloat16", "float16"),
                        help="dtype to measure (repeatable; default float32 and the one runs pick here)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: time one small job locally and through Ray instead (the Ray path's overhead)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="with --executor ray: the cluster's head (default: a local Ray instance)")
    parser.set_defaults(func=_bench)


def _progress(event: Event) -> None:
    if event.kind == "progress":
        print(f"  {event.phase}: {event.done}/{event.total}", file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace) -> int:
    for name in ("personas", "train_dialogues", "test_dialogues", "batch_size", "max_new_tokens", "repeats"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.executor == "ray":
        print(ray_overhead(args.model, args.personas, args.repeats, args.ray_address).summary())
        return 0
    workspace = Workspace.open(args.workspace) if getattr(args, "workspace", None) else None
    result = run_bench(args.model, args.personas, args.train_dialogues, args.repeats, args.device,
                       test_dialogues=args.test_dialogues, batch_size=args.batch_size,
                       max_new_tokens=args.max_new_tokens, dtypes=tuple(args.dtype) if args.dtype else None,
                       workspace=workspace, reporter=Reporter(_progress))
    print(format_result(result))
    return 0


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def format_result(r: BenchResult) -> str:
    mb = 1024 * 1024
    n = r.personas
    m = r.main
    lines = [f"model {r.model} on {r.device}; {n} personas x {r.train_dialogues} training dialogues "
             f"(batch {r.batch_size}, 1 epoch), {r.test_dialogues} test dialogue(s) each ({m.eval_turns} turns, "
             f"replies up to {r.max_new_tokens} tokens); medians of {r.repeats} repeat(s)",
             f"matrix products [{r.matmul_shape[0]}x{r.matmul_shape[1]}]@[{r.matmul_shape[1]}x{r.matmul_shape[2]}]: "
             + ", ".join(f"{d} {x.matmul_flops / 1e9:.0f} GFLOP/s" for d, x in r.dtypes.items()),
             f"training FLOPs per token: {r.flops_per_token / 1e6:.0f} M (frozen base: 4 per body weight, the head "
             "on labelled tokens, attention)",
             f"runs here hold the model in {r.dtype_choice}",
             "",
             f"{'':40}" + "".join(f"{d:>22}" for d in r.dtypes),
             f"{'':40}" + "".join(f"{'seconds':>9}{'rate':>13}" for _ in r.dtypes)]
    rows = [("train: unified LoRA, 1 adapter", "unified", "tok/s"),
            (f"train: batched, {n} adapters", "batched", "tok/s"),
            (f"train: one at a time, {n} adapters", "sequential", "tok/s"),
            (f"eval: cache reused, {r.eval_batch_size} rows at once", "eval_cached", "turns/s"),
            (f"eval: cache reused, {TODAY_EVAL_BATCH} rows", "eval_cached_today_batch", "turns/s"),
            (f"eval: whole prompts, {TODAY_EVAL_BATCH} rows (today)", "eval_whole", "turns/s"),
            ("eval: one persona at a time", "eval_sequential", "turns/s")]
    for label, phase, unit in rows:
        cells = []
        for x in r.dtypes.values():
            if not x.has(phase):
                cells.append(f"{'-':>9}{'':>13}")
                continue
            rate = x.tokens_per_second(phase) if unit == "tok/s" else x.turns_per_second(phase)
            cells.append(f"{x.median(phase):9.2f}{rate:>8.1f} {unit:<4}"[:22].ljust(22))
        lines.append(f"{label:40}" + "".join(cells))
    lines.append(f"{'peak memory MB (batched training)':40}"
                 + "".join(f"{x.peak_memory_bytes.get('batched', 0) / mb:>22.0f}" for x in r.dtypes.values()))
    lines.append(f"{'padding share of batched training':40}"
                 + "".join(f"{x.padding_share * 100:>21.1f}%" for x in r.dtypes.values()))
    lines.append(f"(peak memory = {r.memory_kind} during the phase, model included)")
    lines.append("")
    ratio = r.bf16_vs_fp32
    if ratio is not None:
        lines.append(f"bf16 / float32 training tokens/s:       {ratio:5.2f}x  (target >= {TARGETS['bf16_vs_fp32']}x: "
                     f"{_verdict(ratio >= TARGETS['bf16_vs_fp32'])})")
    else:
        lines.append("bf16 / float32 training tokens/s:       not measured (one dtype)")
    width = r.matmul_shape[1]
    for d in r.dtypes:
        share = r.roofline_share(d)
        note = ""
        if d == m.dtype:
            note = f"  (target >= {TARGETS['roofline'] * 100:.0f} %: {_verdict(share >= TARGETS['roofline'])}"
            if share < TARGETS["roofline"] and r.device.startswith("cuda"):
                # Read off a profile of a bf16 unified step on an H200: the GPU busy about a tenth of the wall time.
                note += "; what stops it: launch overhead, the GPU waits for Python between small kernels"
            note += ")"
        lines.append(f"training at {share * 100:5.1f} % of the {d} matrix-product rate{note}")
        breakdown = r.dtypes[d].training_breakdown
        if breakdown is not None:
            lines.append(f"  where batched training's operator time went (profiled, {d}, layers {width} wide): "
                         + breakdown.summary(r.dtypes[d].matmul_flops))
    lines += [
        f"evaluation turns/s, engine ({m.dtype}, cache reused) / today ({r.baseline.dtype}, whole prompts): "
        f"{r.eval_vs_today:5.2f}x  (target >= {TARGETS['eval_vs_today']}x: "
        f"{_verdict(r.eval_vs_today >= TARGETS['eval_vs_today'])})",
        f"  of which the cache alone ({m.dtype}, {TODAY_EVAL_BATCH} rows): "
        f"{m.median('eval_whole') / m.median('eval_cached_today_batch'):.2f}x; {r.eval_batch_size} rows at once "
        f"instead of {TODAY_EVAL_BATCH}: {m.median('eval_cached_today_batch') / m.median('eval_cached'):.2f}x",
        f"(a) batched {n} adapters / unified LoRA, time: {r.batched_vs_unified:5.2f}x  "
        f"(target <= {TARGETS['batched_vs_unified']}x: {_verdict(r.batched_vs_unified <= TARGETS['batched_vs_unified'])})",
        f"(b) one at a time / batched, time:         {r.sequential_vs_batched:5.2f}x faster batched",
    ]
    if m.has("eval_sequential"):
        lines.append(f"(d) mixed-adapter evaluation / one persona at a time: {r.mixed_vs_sequential:5.2f}x faster "
                     f"(target >= {TARGETS['mixed_vs_sequential']}x at N = 16: "
                     f"{_verdict(r.mixed_vs_sequential >= TARGETS['mixed_vs_sequential'])})")
    if m.eval_breakdown is not None:
        lines.append(f"  where mixed-adapter evaluation's operator time went (profiled, {m.dtype}, "
                     f"{r.eval_batch_size} rows): " + m.eval_breakdown.summary(m.matmul_flops))
    return "\n".join(lines)

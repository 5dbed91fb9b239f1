"""``shpers bench``: batched multi-adapter training and evaluation against the study's ways, as ratios."""

from __future__ import annotations

import argparse
import sys

from shpers_core.bench import BenchResult, run_bench
from shpers_core.errors import UserError
from shpers_core.events import Event, Reporter

TRAIN_TARGET = 1.3
EVAL_TARGET = 5.0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="time batched per-persona training and evaluation",
        description="On one base model and the same synthetic examples, time (a) N persona adapters trained "
                    "together against one unified LoRA, (b) the same N adapters trained one after another, "
                    "(c) mixed-adapter batched generation against one persona at a time. Prints medians "
                    "over the repeats and their ratios.")
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model name, folder or hub id (default smollm2-135m-instruct)")
    parser.add_argument("--personas", type=int, default=16, metavar="N", help="persona adapters (default 16)")
    parser.add_argument("--examples-per-persona", type=int, default=2, metavar="N",
                        help="training dialogues per persona (default 2)")
    parser.add_argument("--tokens", type=int, default=120, metavar="N",
                        help="mean tokens per synthetic dialogue (default 120)")
    parser.add_argument("--batch-size", type=int, default=2, metavar="N",
                        help="dialogues per optimiser step and adapter (default 2)")
    parser.add_argument("--prompt-tokens", type=int, default=48, metavar="N",
                        help="tokens per evaluation prompt (default 48)")
    parser.add_argument("--prompts-per-persona", type=int, default=1, metavar="N",
                        help="evaluation prompts per persona (default 1)")
    parser.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                        help="longest generated reply (default 32)")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="timed repeats; medians are reported (default 1)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.set_defaults(func=_bench)


def _progress(event: Event) -> None:
    if event.kind == "progress":
        print(f"  {event.phase}: {event.done}/{event.total}", file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace) -> int:
    for name in ("personas", "examples_per_persona", "tokens", "batch_size", "prompt_tokens",
                 "prompts_per_persona", "max_new_tokens", "repeats"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    result = run_bench(args.model, args.personas, args.examples_per_persona, args.repeats, args.device,
                       tokens_per_example=args.tokens, batch_size=args.batch_size, prompt_tokens=args.prompt_tokens,
                       prompts_per_persona=args.prompts_per_persona, max_new_tokens=args.max_new_tokens,
                       reporter=Reporter(_progress))
    print(format_result(result))
    return 0


def format_result(r: BenchResult) -> str:
    mb = 1024 * 1024
    n = r.personas
    lines = [
        f"model {r.model} on {r.device} ({r.dtype}); {n} personas x {r.examples_per_persona} dialogues of "
        f"~{r.tokens_per_example} tokens, batch {r.batch_size}, 1 epoch; medians of {r.repeats} repeat(s)",
        f"{'':34}{'seconds':>9}{'tokens/s':>10}{'peak MB':>9}",
    ]
    rows = [
        ("train: unified LoRA, 1 adapter", "unified"),
        (f"train: batched, {n} adapters", "batched"),
        (f"train: one at a time, {n} adapters", "sequential"),
        (f"eval: mixed batches, {n} adapters", "eval_batched"),
        ("eval: one persona at a time", "eval_sequential"),
    ]
    for label, phase in rows:
        lines.append(f"{label:34}{r.median(phase):9.2f}{r.tokens_per_second(phase):10.1f}"
                     f"{r.peak_memory_bytes[phase] / mb:9.0f}")
    lines += [
        f"(tokens: {r.train_tokens} trained per run; {r.generated_tokens} generated from "
        f"{n * r.prompts_per_persona} prompts of {r.prompt_tokens} tokens; peak memory = {r.memory_kind} "
        f"during each phase, model included)",
        f"(a) batched {n} adapters / unified LoRA, time:  {r.batched_vs_unified:.2f}x  "
        f"(target <= {TRAIN_TARGET}x; the study's was ~100x)",
        f"(b) one at a time / batched, time:         {r.sequential_vs_batched:.2f}x faster batched",
        f"(c) eval one persona at a time / mixed batches: {r.eval_speedup:.2f}x faster batched "
        f"(target >= {EVAL_TARGET}x at 16 personas)",
    ]
    return "\n".join(lines)

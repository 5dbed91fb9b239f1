"""Timing of the batched multi-adapter engine against the ways the study did the same work.

On one loaded base model and the same synthetic examples, :func:`run_bench` times
(a) ``train_many`` on N persona adapters against one unified LoRA (``fit_adapter``) on all their
examples together: the same tokens and optimiser steps' worth of work, so the ratio shows
what N adapters cost beyond one; (b) the same N adapters trained one after another with
``fit_adapter``, as the study did; (c) ``generate_replies`` with every persona's prompts in
mixed-adapter batches against one persona at a time. Each is repeated and the median kept.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from shpers_core.events import Reporter
from shpers_core.training.batching import IGNORE_INDEX, Example
from shpers_core.training.config import LoraParams, TrainParams

PHASES = ("unified", "batched", "sequential", "eval_batched", "eval_sequential")


@dataclass
class BenchResult:
    model: str
    device: str
    dtype: str
    personas: int
    examples_per_persona: int
    tokens_per_example: int
    batch_size: int
    prompt_tokens: int
    prompts_per_persona: int
    max_new_tokens: int
    repeats: int
    train_tokens: int = 0
    generated_tokens: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_memory_bytes: dict[str, int] = field(default_factory=dict)
    memory_kind: str = ""

    def median(self, phase: str) -> float:
        return statistics.median(self.seconds[phase])

    @property
    def batched_vs_unified(self) -> float:
        """(a) time of N batched adapters / time of one unified LoRA on the same examples (lower is better)."""
        return self.median("batched") / self.median("unified")

    @property
    def sequential_vs_batched(self) -> float:
        """(b) speed-up of batched training over training the N adapters one after another."""
        return self.median("sequential") / self.median("batched")

    @property
    def eval_speedup(self) -> float:
        """(c) speed-up of mixed-adapter batched generation over one persona at a time."""
        return self.median("eval_sequential") / self.median("eval_batched")

    def tokens_per_second(self, phase: str) -> float:
        tokens = self.generated_tokens if phase.startswith("eval") else self.train_tokens
        return tokens / self.median(phase)


class _PeakMemory:
    """Peak memory while a phase runs: CUDA ``max_memory_allocated``, else the resident set size
    sampled every 10 ms (``ru_maxrss`` cannot be reset, so it would repeat earlier phases' peaks)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0

    def __enter__(self) -> _PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = _rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.done.set()
            self.thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # No procfs (macOS): the high-water mark, in bytes there.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def synthetic_examples(n_personas: int, per_persona: int, length: int, vocab_low: int, vocab_high: int,
                       seed: int = 0) -> dict[str, list[Example]]:
    """Random token dialogues of ``length`` ± 20 % tokens, the second half labelled as the reply."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for p in range(n_personas):
        pid = f"p{p:03d}"
        rows = []
        for _ in range(per_persona):
            n = int(torch.randint(int(length * 0.8), int(length * 1.2) + 1, (1,), generator=g))
            ids = torch.randint(vocab_low, vocab_high, (n,), generator=g).tolist()
            rows.append(Example(tuple(ids), tuple([IGNORE_INDEX] * (n // 2) + ids[n // 2:]), pid))
        out[pid] = rows
    return out


def _timed(result: BenchResult, phase: str, fn: Callable[[], object]) -> object:
    if result.device.startswith("cuda"):
        torch.cuda.synchronize()
    with _PeakMemory(result.device) as mem:
        start = time.perf_counter()
        value = fn()
        if result.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    result.seconds.setdefault(phase, []).append(elapsed)
    result.peak_memory_bytes[phase] = max(result.peak_memory_bytes.get(phase, 0), mem.peak)
    return value


def run_bench(
    model: str = "smollm2-135m-instruct",
    personas: int = 16,
    examples_per_persona: int = 2,
    repeats: int = 1,
    device: str | None = None,
    *,
    tokens_per_example: int = 120,
    batch_size: int = 2,
    prompt_tokens: int = 48,
    prompts_per_persona: int = 1,
    max_new_tokens: int = 32,
    reporter: Reporter | None = None,
) -> BenchResult:
    """Load ``model`` once and time the three comparisons ``repeats`` times each (see the module doc)."""
    from shpers_core.evaluation.generation import generate_replies
    from shpers_core.models import load_base
    from shpers_core.training.fit import fit_adapter
    from shpers_core.training.multi_lora import MultiLoraModel, train_many

    if personas < 1 or examples_per_persona < 1 or repeats < 1:
        raise ValueError("personas, examples per persona and repeats must be at least 1")
    reporter = reporter or Reporter()
    base = load_base(model, device=device)
    tok = base.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # Above the special tokens, which sit at the start of these vocabularies.
    low, high = min(len(tok), 300) // 3 + 3, len(tok)
    data = synthetic_examples(personas, examples_per_persona, tokens_per_example, low, high)
    everything = [e for rows in data.values() for e in rows]
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(low, high, (prompt_tokens,), generator=g).tolist()
               for _ in range(personas * prompts_per_persona)]
    lora = LoraParams()
    train = TrainParams(num_epochs=1, batch_size=batch_size)
    result = BenchResult(model=base.name, device=base.device, dtype=base.dtype, personas=personas,
                         examples_per_persona=examples_per_persona, tokens_per_example=tokens_per_example,
                         batch_size=batch_size, prompt_tokens=prompt_tokens,
                         prompts_per_persona=prompts_per_persona, max_new_tokens=max_new_tokens,
                         repeats=repeats, train_tokens=sum(len(e) for e in everything),
                         memory_kind="CUDA max_memory_allocated" if base.device.startswith("cuda")
                         else "process resident set size")
    quiet = Reporter(should_stop=reporter.should_stop)

    def unified():
        return fit_adapter(base.model, pad_id, everything, None, lora, train, quiet)

    def batched():
        return train_many(base.model, pad_id, data, lora, train, quiet)

    def sequential():
        return [fit_adapter(base.model, pad_id, rows, None, lora, train, quiet) for rows in data.values()]

    # First calls pay for lazy initialisation (kernels, allocator, PEFT imports); keep that out of the timings.
    few = dict(list(data.items())[:2])
    fit_adapter(base.model, pad_id, next(iter(few.values())), None, lora, train, quiet)
    train_many(base.model, pad_id, few, lora, train, quiet)
    total, done = repeats * len(PHASES), 0
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for _ in range(repeats):
        for phase, fn in (("unified", unified), ("batched", batched), ("sequential", sequential)):
            reporter.check()
            out = _timed(result, phase, fn)
            if phase == "batched":
                adapters = out.state_dicts
            done += 1
            reporter.progress("bench", done, total)

    multi = MultiLoraModel(base.model, personas, lora)
    try:
        for slot, pid in enumerate(data):
            multi.load_adapter(slot, adapters[pid])
        slots = [i // prompts_per_persona for i in range(len(prompts))]

        def eval_batched():
            return generate_replies(base.model, tok, prompts, slots=slots, multi=multi,
                                    max_new_tokens=max_new_tokens, batch_size=16)

        def eval_sequential():
            k = prompts_per_persona
            return [reply for s in range(personas)
                    for reply in generate_replies(base.model, tok, prompts[s * k:(s + 1) * k], slots=[s] * k,
                                                  multi=multi, max_new_tokens=max_new_tokens, batch_size=16)]

        generate_replies(base.model, tok, prompts[:2], slots=slots[:2], multi=multi, max_new_tokens=2)
        for _ in range(repeats):
            for phase, fn in (("eval_batched", eval_batched), ("eval_sequential", eval_sequential)):
                reporter.check()
                replies = _timed(result, phase, fn)
                result.generated_tokens = sum(len(x) for x in replies)
                done += 1
                reporter.progress("bench", done, total)
    finally:
        multi.remove()
    return result

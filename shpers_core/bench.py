"""``shpers bench``: this machine's limit, and the engine's real path measured against it.

In one process: the matrix-product rate in float32 and bf16 (the roofline); then, on dialogues of
the dataset (the workspace's, else the first personas of the default one) and for each dtype,
the real trainers and evaluator timed side by side: (a) ``train_many`` on N persona adapters
against one unified LoRA (``fit_adapter``) on the same dialogues; (b) the N adapters trained one
after another; (c) evaluation of every test turn with each dialogue's cache reused, against
today's path that encodes every turn's prompt whole; (d) mixed-adapter evaluation against one
persona at a time. Each is repeated and the median kept. On a CPU, one more batched run under the
profiler says where training's time goes (:mod:`shpers_core.step_profile`).
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

from shpers_core.data import generate_dataset, load_dataset, split_dataset
from shpers_core.evaluation.config import EvalParams
from shpers_core.evaluation.evaluate import generate_dialogues_for_plan
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.events import Reporter
from shpers_core.models import DEFAULT_MODEL, encode_dialogue, load_base, pick_device, pick_dtype
from shpers_core.models.device import check_device, cpu_supports_bf16, dtype_reason, matmul_rate, torch_dtype
from shpers_core.step_profile import TimeBreakdown, time_breakdown
from shpers_core.threads import computing
from shpers_core.training.adapter_types import Adapter
from shpers_core.training.batching import IGNORE_INDEX
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.fit import fit_adapter
from shpers_core.training.multi import train_many

# Phases per dtype; "sequential" and "eval_sequential" run in the last dtype only (the slow ones).
PHASES = ("unified", "batched", "sequential", "eval_cached", "eval_cached_today_batch", "eval_whole",
          "eval_sequential")
# Rows decoded at once before 2026-12-04 (EvalParams' default then): today's path uses it.
TODAY_EVAL_BATCH = 16

TARGETS = {
    "bf16_vs_fp32": 2.5,  # bf16 training tokens/s over float32's
    "roofline": 0.40,  # training FLOP/s over the bf16 matrix-product rate
    "eval_vs_today": 3.0,  # turns/s against today's path (float32, whole prompts)
    "batched_vs_unified": 1.1,  # time of N batched adapters over one unified LoRA
    "mixed_vs_sequential": 8.0,  # mixed-adapter evaluation against one persona at a time, N = 16
}


@dataclass
class DtypeResult:
    dtype: str
    matmul_flops: float = 0.0
    """Measured matrix-product rate, FLOP/s."""
    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_memory_bytes: dict[str, int] = field(default_factory=dict)
    train_tokens: int = 0
    eval_turns: int = 0
    padding_share: float = 0.0
    training_breakdown: TimeBreakdown | None = None
    """Where one profiled batched-training run's time went (CPU, the dtype runs use here); else None."""
    eval_breakdown: TimeBreakdown | None = None
    """The same for one mixed-adapter evaluation at the engine's batch (cache reused)."""

    def median(self, phase: str) -> float:
        return statistics.median(self.seconds[phase])

    def has(self, phase: str) -> bool:
        return bool(self.seconds.get(phase))

    def tokens_per_second(self, phase: str) -> float:
        return self.train_tokens / self.median(phase)

    def turns_per_second(self, phase: str) -> float:
        return self.eval_turns / self.median(phase)


@dataclass
class BenchResult:
    model: str
    device: str
    personas: int
    train_dialogues: int
    test_dialogues: int
    batch_size: int
    max_new_tokens: int
    repeats: int
    flops_per_token: float = 0.0
    """Training FLOPs per token of this model (see :func:`training_flops_per_token`)."""
    dtypes: dict[str, DtypeResult] = field(default_factory=dict)
    memory_kind: str = ""
    matmul_shape: tuple[int, int, int] = (0, 0, 0)
    eval_batch_size: int = field(default_factory=lambda: EvalParams().eval_batch_size)
    """Rows the engine decodes at once (its default); today's path decodes ``TODAY_EVAL_BATCH``."""
    dtype_choice: str = ""
    """The dtype runs pick on this device and why (:func:`~shpers_core.models.device.dtype_reason`)."""

    @property
    def main(self) -> DtypeResult:
        """The dtype runs use here (the last measured)."""
        return list(self.dtypes.values())[-1]

    @property
    def baseline(self) -> DtypeResult:
        return self.dtypes.get("float32") or self.main

    @property
    def batched_vs_unified(self) -> float:
        return self.main.median("batched") / self.main.median("unified")

    @property
    def sequential_vs_batched(self) -> float:
        return self.main.median("sequential") / self.main.median("batched")

    @property
    def bf16_vs_fp32(self) -> float | None:
        if "bfloat16" not in self.dtypes or "float32" not in self.dtypes:
            return None
        return self.dtypes["float32"].median("batched") / self.dtypes["bfloat16"].median("batched")

    def roofline_share(self, dtype: str) -> float:
        """Training FLOP/s of the batched trainer over the matrix-product rate of ``dtype``."""
        r = self.dtypes[dtype]
        return r.tokens_per_second("batched") * self.flops_per_token / r.matmul_flops

    @property
    def eval_vs_today(self) -> float:
        """Turns/s of the engine's evaluation (cache reused, in its dtype) over today's (float32, whole prompts)."""
        return self.baseline.median("eval_whole") / self.main.median("eval_cached")

    @property
    def mixed_vs_sequential(self) -> float:
        return self.main.median("eval_sequential") / self.main.median("eval_cached")

    # Kept for callers of the earlier bench.
    @property
    def eval_speedup(self) -> float:
        return self.mixed_vs_sequential


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


def _timed(r: DtypeResult, device: str, phase: str, fn: Callable[[], object]) -> object:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    with _PeakMemory(device) as mem:
        start = time.perf_counter()
        value = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    r.seconds.setdefault(phase, []).append(elapsed)
    r.peak_memory_bytes[phase] = max(r.peak_memory_bytes.get(phase, 0), mem.peak)
    return value


def _warm_up(device: str, phases: list[tuple[str, Callable[[], object]]]) -> None:
    """On CUDA, run every phase once untimed. A GPU's first call of each kernel and shape pays for
    loading and planning (on an H200 a first unified pass took 4x its later ones); on the CPU the
    short warm-up above covers it, and a full one would double the bench."""
    if device.startswith("cuda"):
        for _phase, fn in phases:
            fn()


def training_flops_per_token(model: torch.nn.Module, labelled_share: float, mean_length: float) -> float:
    """FLOPs to train LoRA adapters on one token of a frozen model.

    Forward 2 and backward 2 FLOPs per weight of the body (the frozen weights need no gradient of
    their own, only the activations'), the head only on the labelled share of tokens, and the
    attention scores and mixing over the mean context, forward and backward; LoRA's own matrices
    are a rounding error at rank 8.
    """
    config = model.config.get_text_config(decoder=True)
    head = model.get_output_embeddings().weight.numel()
    embed = model.get_input_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    body = sum(p.numel() for p in model.parameters()) - embed - (0 if tied else head)
    attention = 2 * 2 * config.num_hidden_layers * config.hidden_size * mean_length / 2
    return 4.0 * body + 4.0 * head * labelled_share + 2 * attention


def bench_dataset(personas: int, workspace=None):
    """The workspace's dataset if there is one, else the default dataset's first ``personas`` personas."""
    if workspace is not None and workspace.dataset_path.exists():
        dataset = load_dataset(workspace.dataset_path)
        if len(dataset.personas) >= personas:
            return dataset, str(workspace.dataset_path)
    return generate_dataset(personas, 30, seed=0), "the default dataset (generated)"


def run_bench(
    model: str = DEFAULT_MODEL,
    personas: int = 16,
    train_dialogues: int = 2,
    repeats: int = 1,
    device: str | None = None,
    *,
    test_dialogues: int = 1,
    batch_size: int = 4,
    max_new_tokens: int = 24,
    dtypes: tuple[str, ...] | None = None,
    workspace=None,
    reporter: Reporter | None = None,
    eval_one_at_a_time: bool = True,
) -> BenchResult:
    """Measure the roofline and time the phases of :data:`PHASES` in each of ``dtypes`` (default float32,
    then the dtype runs pick here if it differs); see the module docstring."""
    if personas < 1 or train_dialogues < 1 or test_dialogues < 1 or repeats < 1:
        raise ValueError("personas, dialogues and repeats must be at least 1")
    reporter = reporter or Reporter()
    device = check_device(device) if device else pick_device()
    picked = pick_dtype(device)
    if dtypes is None:
        # The dtype runs pick goes last (the report's main one); a CPU with bf16 instructions that runs
        # float32 still measures bf16, to show why.
        tried = ["float32", "bfloat16"] if device == "cpu" and cpu_supports_bf16() else ["float32"]
        dtypes = (*[d for d in tried if d != picked], picked)
    dataset, _source = bench_dataset(personas, workspace)
    splits = split_dataset(dataset, seed=0)
    ids = sorted(dataset.personas)[:personas]
    lora = LoraParams()
    train = TrainParams(num_epochs=1, batch_size=batch_size, warmup_ratio=0.0)
    result = BenchResult(model=model, device=device, personas=personas, train_dialogues=train_dialogues,
                         test_dialogues=test_dialogues, batch_size=batch_size, max_new_tokens=max_new_tokens,
                         repeats=repeats, memory_kind="CUDA max_memory_allocated" if device.startswith("cuda")
                         else "process resident set size", dtype_choice=f"{picked}: {dtype_reason(device)}")
    quiet = Reporter(should_stop=reporter.should_stop)
    progress = {"done": 0, "total": len(dtypes) * (1 + repeats * 5) + repeats * 2}

    def tick() -> None:
        progress["done"] += 1
        reporter.progress("bench", progress["done"], progress["total"])

    with computing():
        for d_index, dtype in enumerate(dtypes):
            _bench_dtype(result, model, device, dtype, splits, ids, lora, train, quiet, reporter, tick,
                         slow=d_index == len(dtypes) - 1, slow_eval=eval_one_at_a_time)
    return result


def _bench_dtype(result: BenchResult, model: str, device: str, dtype: str, splits, ids: list[str],
                 lora: LoraParams, train: TrainParams, quiet: Reporter, reporter: Reporter,
                 tick: Callable[[], None], *, slow: bool, slow_eval: bool = True) -> None:
    """Load ``model`` in ``dtype`` and time its phases into ``result.dtypes``; ``slow`` adds the one-at-a-time ones."""
    repeats = result.repeats
    base = load_base(model, device=device, dtype=dtype)
    tok = base.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    config = base.model.config.get_text_config(decoder=True)
    shape = (2048, config.hidden_size, config.intermediate_size)
    r = DtypeResult(dtype=base.dtype, matmul_flops=matmul_rate(torch_dtype(dtype), shape, device))
    result.dtypes[base.dtype] = r
    result.matmul_shape = shape
    tick()
    data = {pid: [encode_dialogue(tok, d, max_length=512, persona_id=pid)
                  for d in splits[pid].train[:result.train_dialogues]] for pid in ids}
    everything = [e for rows in data.values() for e in rows]
    r.train_tokens = sum(len(e) for e in everything)
    labelled = sum(sum(1 for x in e.labels[1:] if x != IGNORE_INDEX) for e in everything)
    result.flops_per_token = training_flops_per_token(base.model, labelled / r.train_tokens,
                                                      r.train_tokens / len(everything))
    dialogues = [(pid, [h for h, _ in d.turns()]) for pid in ids for d in splits[pid].test[:result.test_dialogues]]
    r.eval_turns = sum(len(h) for _, h in dialogues)

    def unified():
        return fit_adapter(base.model, pad_id, everything, None, lora, train, quiet)

    def batched():
        return train_many(base.model, pad_id, data, lora, train, quiet)

    def sequential():
        return [fit_adapter(base.model, pad_id, rows, None, lora, train, quiet) for rows in data.values()]

    # First calls pay for lazy initialisation (kernels, allocator); keep that out of the timings.
    train_many(base.model, pad_id, dict(list(data.items())[:2]), lora, train, quiet)
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    phases = [("unified", unified), ("batched", batched)] + ([("sequential", sequential)] if slow else [])
    _warm_up(device, phases)
    for _ in range(repeats):
        for phase, fn in phases:
            reporter.check()
            out = _timed(r, device, phase, fn)
            if phase == "batched":
                adapters = out.state_dicts
                r.padding_share = out.padding_share
            tick()
    if slow and not device.startswith("cuda"):
        # One more batched run under the profiler, untimed: it says what keeps training off the roofline.
        r.training_breakdown = time_breakdown(batched)
    plan = EvalPlan(adapters={pid: Adapter(adapters[pid], lora.scaling) for pid in ids})

    def evaluate(rows, reuse=True, batch=result.eval_batch_size):
        return generate_dialogues_for_plan(base, plan, rows, None, result.max_new_tokens, batch, reuse_cache=reuse)

    def eval_sequential():
        return [evaluate([row]) for row in dialogues]

    evaluate(dialogues[:2])
    phases = [("eval_cached", lambda: evaluate(dialogues)),
              ("eval_cached_today_batch", lambda: evaluate(dialogues, batch=TODAY_EVAL_BATCH)),
              ("eval_whole", lambda: evaluate(dialogues, False, TODAY_EVAL_BATCH))]
    phases += [("eval_sequential", eval_sequential)] if slow and slow_eval else []
    _warm_up(device, phases)
    for _ in range(repeats):
        for phase, fn in phases:
            reporter.check()
            _timed(r, device, phase, fn)
            tick()
    if slow and not device.startswith("cuda"):
        r.eval_breakdown = time_breakdown(lambda: evaluate(dialogues))

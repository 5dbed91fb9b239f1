"""Where a phase's time goes: one run under torch's profiler, its operators sorted into a few kinds.

``shpers bench`` uses it to say what keeps training and evaluation from the matrix-product rate
on this machine, from a measurement rather than a guess: the share of operator time each kind
takes, and the rate the matrix products themselves reach (the profiler counts their FLOPs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch.profiler import ProfilerActivity, profile

MATMUL = "matrix products"
# Kinds in the order they are printed; an operator goes to the first whose test matches its name.
KINDS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (MATMUL, lambda n: n in {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm"}),
    ("attention", lambda n: "scaled_dot_product" in n or "flash_attention" in n or "efficient_attention" in n),
    # aten::random_: the 16-bit-word masks of shpers_core.training.dropout.
    ("dropout masks", lambda n: "bernoulli" in n or "native_dropout" in n or n == "aten::random_"),
    ("dtype casts and copies", lambda n: n in {"aten::copy_", "aten::_to_copy", "aten::to", "aten::clone"}),
    ("log-softmax and loss", lambda n: "log_softmax" in n or "nll_loss" in n or "cross_entropy" in n),
    ("element-wise and other", lambda n: True),
)


@dataclass
class TimeBreakdown:
    """Shares of operator time by kind, and the FLOP/s reached inside the matrix products."""

    wall_seconds: float = 0.0
    shares: dict[str, float] = field(default_factory=dict)
    """Kind -> share of the summed self time of all operators (0..1)."""
    matmul_flops: float = 0.0
    """FLOP/s inside the matrix products (their counted FLOPs over their own time); 0 if none ran."""

    def summary(self, matmul_rate: float) -> str:
        """One line: each kind's share, and the matrix products' rate against ``matmul_rate`` (FLOP/s)."""
        parts = []
        for kind, share in self.shares.items():
            text = f"{kind} {share * 100:.0f} %"
            if kind == MATMUL and self.matmul_flops > 0 and matmul_rate > 0:
                text += (f" (at {self.matmul_flops / 1e9:.0f} GFLOP/s, "
                         f"{self.matmul_flops / matmul_rate * 100:.0f} % of the measured rate)")
            parts.append(text)
        return ", ".join(parts)


def kind_of(name: str) -> str:
    return next(kind for kind, test in KINDS if test(name))


def time_breakdown(fn: Callable[[], object]) -> TimeBreakdown:
    """Run ``fn`` once under the CPU profiler and sort its operators' self time into :data:`KINDS`."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    seconds = dict.fromkeys((k for k, _ in KINDS), 0.0)
    mm_seconds = mm_flops = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # Python and autograd frames wrap aten operators; their self time is bookkeeping
        own = event.self_cpu_time_total / 1e6
        kind = kind_of(event.key)
        seconds[kind] += own
        if kind == MATMUL:
            mm_seconds += own
            mm_flops += event.flops or 0
    total = sum(seconds.values())
    shares = {k: (v / total if total > 0 else 0.0) for k, v in seconds.items()}
    return TimeBreakdown(wall_seconds=wall, shares=shares,
                         matmul_flops=mm_flops / mm_seconds if mm_seconds > 0 else 0.0)

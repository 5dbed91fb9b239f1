"""``shpers bench --executor ray``: the same small job run locally and through Ray, side by side.

On one machine Ray cannot be faster; what it costs per job (scheduling, the store snapshot and the
files sent each way, events through the channel, merging the rows back) is the figure to know
before sending thousands of short jobs to a cluster.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass

from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.distributed.options import RayOptions
from shpers_core.distributed.ray_executor import connect, run_on_ray
from shpers_core.events import Reporter
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.workspace import Workspace


@dataclass(frozen=True)
class RayOverhead:
    model: str
    personas: int
    local_s: list[float]
    ray_s: list[float]

    @property
    def local(self) -> float:
        return statistics.median(self.local_s)

    @property
    def ray(self) -> float:
        return statistics.median(self.ray_s)

    def summary(self) -> str:
        extra = self.ray - self.local
        return (f"Ray overhead on one unified LoRA job ({self.model}, {self.personas} personas, median of "
                f"{len(self.local_s)} after a warm-up each):\n"
                f"  local job      {self.local:8.2f} s\n"
                f"  job on Ray     {self.ray:8.2f} s\n"
                f"  overhead       {extra:+8.2f} s per job ({self.ray / self.local:.2f}x)\n"
                "No speed-up is expected on one machine; on a cluster, jobs run side by side on its GPUs.")


def ray_overhead(model: str, personas: int = 2, repeats: int = 1, address: str | None = None) -> RayOverhead:
    """Time the same job with :func:`run_job` and :func:`run_on_ray` in a throw-away workspace."""
    connect(address)  # Ray's start-up is paid once per session, not per job: kept out of the timings
    spec = build_spec("unified_lora", {"train.num_epochs": 1, "train.warmup_ratio": 0.0,
                                       "eval.max_train_dialogues": 2, "eval.max_test_dialogues": 1,
                                       "eval.max_new_tokens": 8}, base_model=model, dtype="float32")
    local, remote = [], []
    with tempfile.TemporaryDirectory(prefix="shpers-bench-ray-") as tmp:
        ws = Workspace.open(tmp)
        write_jsonl(generate_dataset(personas, 9, seed=1), ws.dataset_path)
        for _ in range(repeats + 1):  # the first of each loads the model (here, then in the worker)
            start = time.perf_counter()
            run_job(spec, ws, Reporter())
            local.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_on_ray(spec, ws, Reporter(), options=RayOptions(address=address, max_retries=0))
            remote.append(time.perf_counter() - start)
    return RayOverhead(model, personas, local[1:], remote[1:])

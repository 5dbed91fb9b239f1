"""What a job will cost before it runs: personas, dialogues, optimiser steps and an estimated time.

The time comes from speeds this machine measured on earlier runs of the same base model (their
``info`` metrics ``train_tokens_per_s`` and ``eval_turns_per_s``); with none measured the estimate
says so instead of guessing. Tokens are counted roughly, at four characters per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from shpers_core.data import split_dataset
from shpers_core.methods.registry import get_method
from shpers_core.training.checkpoint import steps_saved

CHARS_PER_TOKEN = 4.0
# Methods that train one adapter per persona: their steps add up persona by persona.
PER_PERSONA_METHODS = ("per_persona_lora",)


@dataclass
class JobEstimate:
    personas: int
    train_dialogues: int
    test_turns: int
    steps: int
    train_tokens: int
    tokens_per_s: float | None
    turns_per_s: float | None
    measured_in: str
    """The run whose speed was used; empty when none was measured."""
    dtype: str = ""
    """The dtype the job asks for, whose runs alone time it; empty: automatic, timed by any run."""

    @property
    def seconds(self) -> float | None:
        """Estimated wall time; None when the needed speed was never measured on this machine."""
        if self.train_tokens and not self.tokens_per_s:
            return None
        if self.test_turns and not self.turns_per_s:
            return None
        train = self.train_tokens / self.tokens_per_s if self.train_tokens else 0.0
        return train + (self.test_turns / self.turns_per_s if self.test_turns else 0.0)

    def summary(self) -> str:
        """One paragraph a person reads before queueing."""
        head = (f"{self.personas} personas · {self.train_dialogues:,} training dialogues · {self.steps:,} training "
                f"steps · {self.test_turns:,} test turns to generate")
        if self.seconds is not None:
            speed = []
            if self.train_tokens:
                speed.append(f"training {self.tokens_per_s:.0f} tokens/s")
            if self.test_turns:
                speed.append(f"evaluation {self.turns_per_s:.2f} turns/s")
            return f"{head}. About {format_duration(self.seconds)} ({', '.join(speed)}, measured in run {self.measured_in})."
        missing = [what for what, needed, speed in (("training", self.train_tokens, self.tokens_per_s),
                                                    ("evaluation", self.test_turns, self.turns_per_s))
                   if needed and not speed]
        model = f"this base model in {self.dtype}" if self.dtype else "this base model"
        return (f"{head}. No time estimate: no finished run of {model} has measured this machine's "
                f"{' or '.join(missing)} speed yet (finish one small job first).")


def left_to_run(estimate: JobEstimate, run_dir: Path) -> tuple[JobEstimate, int]:
    """What is left of ``estimate`` for the run in ``run_dir`` stopped part-way, and the training steps its
    checkpoints hold: it resumes from them, then evaluates in full. The steps are the estimate's own count
    (each persona's or cluster's rounding may differ a little), so what is left is approximate."""
    done = min(steps_saved(Path(run_dir) / "checkpoints"), estimate.steps)
    if not done:
        return estimate, 0
    left = 1.0 - done / estimate.steps
    return replace(estimate, steps=estimate.steps - done, train_tokens=round(estimate.train_tokens * left)), done


def total_seconds(estimates) -> float | None:
    """The estimated time of all ``estimates`` together; None when any of them has no figure."""
    seconds = [e.seconds for e in estimates]
    return None if any(s is None for s in seconds) else float(sum(seconds))


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measured_speed(store, base_model: str, dtype: str | None = None) -> tuple[float | None, float | None, str]:
    """(training tokens/s, evaluation turns/s, run id) from the newest finished runs of ``base_model``; with
    ``dtype``, only from runs that held it in that dtype (bf16 and float32 differ several times over)."""
    tokens = turns = None
    source = ""
    for run in store.list_runs(status="finished"):
        if run.base_model != base_model or (dtype and run.params.get("dtype") != dtype):
            continue
        info = store.metrics(run.id, subset="info")
        if tokens is None and info.get("train_tokens_per_s"):
            tokens, source = float(info["train_tokens_per_s"]), source or run.id
        if turns is None and info.get("eval_turns_per_s"):
            turns, source = float(info["eval_turns_per_s"]), source or run.id
        if tokens is not None and turns is not None:
            break
    return tokens, turns, source


_last_split: dict = {}


def estimate_job(spec, dataset, store) -> JobEstimate:
    """The cost of running ``spec`` on ``dataset``, timed with the speeds recorded in ``store``."""
    method = get_method(spec.method)
    train, ev = spec.train, spec.eval
    ids = list(spec.personas) or list(dataset.persona_ids)
    # The app asks again after every edit of the form: split each dataset once per seed.
    key = (id(dataset), ev.split_seed)
    if _last_split.get("key") != key or _last_split.get("dataset") is not dataset:
        _last_split.update(key=key, dataset=dataset, splits=split_dataset(dataset, seed=ev.split_seed))
    splits = _last_split["splits"]
    per_persona, chars, test_turns = [], 0, 0
    for pid in ids:
        split = splits[pid]
        dialogues = split.train[: ev.max_train_dialogues] if ev.max_train_dialogues else split.train
        per_persona.append(len(dialogues))
        chars += sum(min(sum(len(m.text) for m in d.messages), train.max_length * CHARS_PER_TOKEN)
                     for d in dialogues)
        tests = split.test[: ev.max_test_dialogues] if ev.max_test_dialogues else split.test
        test_turns += sum(len(d.turns()) for d in tests)
    if not method.trains:
        steps, tokens = 0, 0
    else:
        # A learned prompt per persona (soft_prompt's scope) is one fit per persona too.
        if spec.method in PER_PERSONA_METHODS or getattr(spec.method_params, "scope", None) == "persona":
            steps = sum(math.ceil(n / train.batch_size) for n in per_persona if n) * train.num_epochs
        else:
            steps = math.ceil(sum(per_persona) / train.batch_size) * train.num_epochs
        tokens = int(chars / CHARS_PER_TOKEN * train.num_epochs)
    tokens_per_s, turns_per_s, source = measured_speed(store, spec.base_model, spec.dtype)
    return JobEstimate(len(ids), sum(per_persona) if method.trains else 0, test_turns, steps, tokens,
                       tokens_per_s, turns_per_s, source, spec.dtype or "")

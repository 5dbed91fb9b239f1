"""What a job will cost before it runs: personas, dialogues, optimiser steps and an estimated time.

The time comes from speeds this machine measured on earlier runs of the same base model (their
``info`` metrics ``train_tokens_per_s`` and ``eval_turns_per_s``), runs of the same method first (a
retrieval prompt is several times longer than a plain one); with none measured the estimate says so
instead of guessing. Training tokens are the job's characters times the tokens per character that run
trained on (``train_chars`` beside ``train_tokens``): a chat template adds tokens of its own, and
SmolLM2's dialogues came to about two characters a token, not the four of plain English text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from shpers_core.data import split_dataset
from shpers_core.methods.registry import get_method
from shpers_core.store.records import to_json
from shpers_core.training.checkpoint import steps_saved

CHARS_PER_TOKEN = 4.0
"""Used only where no run on the base model has recorded its characters and tokens (runs before 2026-12-07)."""
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
    other_seconds: float = 0.0
    """Time before evaluation besides training (sanity check, validation, clustering, merging, saving), as the
    newest run of the same method took it; 0 when none recorded it."""
    evaluated_in: str = ""
    """The run whose evaluation speed was used, where it is not ``measured_in`` (a merge trains nothing: its
    evaluation is timed by merges, its training speed by another method's run)."""

    @property
    def seconds(self) -> float | None:
        """Estimated wall time; None when the needed speed was never measured on this machine."""
        if self.train_tokens and not self.tokens_per_s:
            return None
        if self.test_turns and not self.turns_per_s:
            return None
        train = self.train_tokens / self.tokens_per_s if self.train_tokens else 0.0
        return train + (self.test_turns / self.turns_per_s if self.test_turns else 0.0) + self.other_seconds

    def speed_runs(self) -> tuple[str, str]:
        """The runs whose training and evaluation speeds time this job ("" for a part it does not have)."""
        return (self.measured_in if self.train_tokens else "",
                (self.evaluated_in or self.measured_in) if self.test_turns else "")

    def measured_where(self) -> str:
        """The run(s) whose speeds time this job: "run A", or "runs A (training) and B (evaluation)"."""
        trained, evaluated = self.speed_runs()
        if trained and evaluated and evaluated != trained:
            return f"runs {trained} (training) and {evaluated} (evaluation)"
        return f"run {trained or evaluated}"

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
            return f"{head}. About {format_duration(self.seconds)} ({', '.join(speed)}, measured in {self.measured_where()})."
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


@dataclass(frozen=True)
class MeasuredSpeed:
    tokens_per_s: float | None
    turns_per_s: float | None
    tokens_per_char: float
    """Training tokens per character of dialogue text, chat template included (1 / CHARS_PER_TOKEN when unmeasured)."""
    run_id: str
    """The run the speeds came from (the training speed's, when two runs gave them); empty when none."""
    other_seconds: float = 0.0
    """The newest run of the method's time before evaluation besides training, with the same method
    parameters where one has them (a TIES merge takes half a minute, a factor average under a second)."""
    eval_run_id: str = ""
    """The run the evaluation speed came from; empty when none."""


def measured_speed(store, base_model: str, dtype: str | None = None, method: str | None = None,
                   method_params: dict | None = None) -> MeasuredSpeed:
    """The newest speeds this machine measured on ``base_model``, from runs of ``method`` where one has them,
    else from any; with ``dtype``, only from runs that held it in that dtype (bf16 and float32 differ
    several times over)."""
    runs = [run for run in store.list_runs(status="finished")
            if run.base_model == base_model and not (dtype and run.params.get("dtype") != dtype)]
    mine = [run for run in runs if run.method == method]
    ordered = mine + [run for run in runs if run.method != method]
    infos: dict[str, dict] = {}  # read as needed: the app asks after every edit of the form

    def first(has, candidates=ordered):
        for run in candidates:
            if run.id not in infos:
                infos[run.id] = store.metrics(run.id, subset="info")
            if has(infos[run.id]):
                return run, infos[run.id]
        return None, {}

    trained, train_info = first(lambda info: info.get("train_tokens_per_s"))
    evaluated, eval_info = first(lambda info: info.get("eval_turns_per_s"))
    # The character count of the run that gave the training speed, or the newest that has one.
    counted = train_info if train_info.get("train_chars") else first(lambda info: info.get("train_chars"))[1]
    per_char = (counted["train_tokens"] / counted["train_chars"] if counted.get("train_tokens")
                else 1.0 / CHARS_PER_TOKEN)
    source = trained or evaluated

    def recorded(info):
        return "other_seconds" in info

    alike = first(recorded, [run for run in mine if run.params.get("method_params") == method_params])[1]
    other = (alike or first(recorded, mine)[1]).get("other_seconds", 0.0)
    return MeasuredSpeed(train_info.get("train_tokens_per_s"), eval_info.get("eval_turns_per_s"), per_char,
                         source.id if source else "", other, evaluated.id if evaluated else "")


_last_split: dict = {}


@dataclass(frozen=True)
class Workload:
    """What a job reads and does, whatever the machine."""

    personas: int
    train_dialogues: int
    steps: int
    train_chars: int
    """Characters of training text over all epochs, each dialogue cut at ``max_length`` tokens' worth."""
    test_turns: int


def job_workload(spec, dataset) -> Workload:
    """The personas, training dialogues, optimiser steps, training characters and test turns of ``spec``."""
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
        return Workload(len(ids), 0, 0, 0, test_turns)
    # A learned prompt per persona (soft_prompt's scope) is one fit per persona too.
    if spec.method in PER_PERSONA_METHODS or getattr(spec.method_params, "scope", None) == "persona":
        steps = sum(math.ceil(n / train.batch_size) for n in per_persona if n) * train.num_epochs
    else:
        steps = math.ceil(sum(per_persona) / train.batch_size) * train.num_epochs
    return Workload(len(ids), sum(per_persona), steps, int(chars * train.num_epochs), test_turns)


def estimate_job(spec, dataset, store) -> JobEstimate:
    """The cost of running ``spec`` on ``dataset``, timed with the speeds recorded in ``store``."""
    work = job_workload(spec, dataset)
    # As the store holds them (JSON: lists, not tuples), to match the runs' recorded method parameters.
    params = json.loads(to_json(spec.to_dict()["method_params"]))
    speed = measured_speed(store, spec.base_model, spec.dtype, spec.method, params)
    return JobEstimate(work.personas, work.train_dialogues, work.test_turns, work.steps,
                       round(work.train_chars * speed.tokens_per_char), speed.tokens_per_s, speed.turns_per_s,
                       speed.run_id, spec.dtype or "", speed.other_seconds, speed.eval_run_id)

"""The command line's progress display when its output is a log file rather than a terminal."""

from __future__ import annotations

import io

from shpers_core.cli.progress import ProgressPrinter
from shpers_core.events import Finished, Progress, Started, Step


def test_without_a_terminal_progress_is_printed_by_quarters_and_ends_with_the_score():
    out = io.StringIO()
    show = ProgressPrinter(out)
    show(Started("r1", "unified_lora", 100))
    for i in range(1, 101):
        show(Step(i, 100, 2.0 - i / 100, 5e-4))
    show(Progress("evaluating", 10, 10))
    show(Finished("r1", {"embedding_similarity": 0.4567}))
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if "train step" in line]
    assert [s.split()[2] for s in steps] == ["25/100", "50/100", "75/100", "100/100"]
    assert "\r" not in out.getvalue()  # no terminal redraws in a log
    assert lines[-1] == "run r1 finished: embedding similarity 45.67%"


def test_quiet_prints_nothing():
    out = io.StringIO()
    show = ProgressPrinter(out, quiet=True)
    show(Started("r1", "unified_lora", 1))
    show(Step(1, 1, 1.0, 1e-4))
    assert out.getvalue() == ""


def test_progress_shows_rate_and_eta_from_the_phase_so_far():
    out = io.StringIO()
    now = [0.0]
    show = ProgressPrinter(out, clock=lambda: now[0])
    show(Started("r1", "unified_lora", 100))
    for i in range(1, 101):
        now[0] = 2.0 * i  # two seconds a step
        show(Step(i, 100, 1.0, 5e-4))
    quarter = next(line for line in out.getvalue().splitlines() if "25/100" in line)
    assert quarter.endswith("2.0 s/step · ETA 2m30s")  # 75 steps left at 2 s each
    for i in range(1, 201):
        now[0] = 200 + i / 4  # four items a second
        show(Progress("generate", i, 200))
    half = next(line for line in out.getvalue().splitlines() if "generate: 100/200" in line)
    assert half.endswith("4.0 items/s · ETA 25s")

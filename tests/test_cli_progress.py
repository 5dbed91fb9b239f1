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

"""Streamed chat replies read the same as whole ones."""

from __future__ import annotations

import pytest

from shpers_core.jobs.chat import trimmed


@pytest.mark.parametrize("pieces", [
    ["\n\n", " Lights", " on", " in the", " lounge.", "\n", " "],
    ["  ", "\n"],
    ["Done", "."],
    ["a", "  ", "b", " "],
])
def test_streamed_pieces_join_to_the_stripped_reply(pieces):
    streamed = list(trimmed(iter(pieces)))
    assert "".join(streamed) == "".join(pieces).strip()
    assert all(streamed)  # no empty updates for the chat pane


def test_rows_streamed_together_read_as_each_alone(tiny_base):
    from shpers_core.data.schema import Message
    from shpers_core.evaluation.evaluate import generate_for_plan
    from shpers_core.evaluation.plan import EvalPlan
    from shpers_core.evaluation.streaming import stream_rows

    history = [Message("user", "Turn on the kitchen lights, please.")]
    plans = [EvalPlan(system={"p": "You are terse."}), EvalPlan(system={"p": "You like long answers about lamps."})]
    rows = [(plan, "p", history, None) for plan in plans]
    pieces = list(stream_rows(tiny_base, rows, max_new_tokens=6))
    for row, plan in enumerate(plans):
        alone = generate_for_plan(tiny_base, plan, [("p", history)], None, 6, 1)[0]
        mine = [p for p in pieces if p.row == row]
        assert "".join(p.text for p in mine).strip() == alone.strip()
        assert mine[-1].done and sum(p.done for p in mine) == 1
        # tiny-qwen2 is random: it never says it is done, so 6 tokens is the limit it hit.
        assert mine[-1].truncated

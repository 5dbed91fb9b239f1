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

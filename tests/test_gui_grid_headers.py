"""The grid's column heads: a study's long row names stay readable and tell similar runs apart."""

from shpers_gui.widgets.grid_view import HEADER_CHARS, HEADER_LINES, column_title

KV = "Unified + learned persona prefix (KV) (1 of 10 epochs, 8 training dialogues a persona)"
KV_RANDOM = "Unified + learned persona prefix (KV, random init) (1 of 10 epochs, 8 training dialogues a persona)"


def test_long_run_names_wrap_into_a_few_short_lines_that_still_differ():
    titles = [column_title(name) for name in (KV, KV_RANDOM)]
    for title in titles:
        lines = title.split("\n")
        assert 1 < len(lines) <= HEADER_LINES
        assert all(len(line) <= HEADER_CHARS for line in lines)
        assert lines[0] == "Unified + learned"
    assert titles[0] != titles[1]
    assert "random init" in titles[1].replace("\n", " ")


def test_a_short_name_is_left_as_it_is():
    assert column_title("unified") == "unified"
    assert column_title("Per-persona LoRA (8 training dialogues a persona)").replace("\n", " ") == \
        "Per-persona LoRA (8 training dialogues a persona)"


def test_a_name_too_long_for_the_head_ends_in_an_ellipsis():
    name = KV_RANDOM + " seed 3, learning rate 0.001, rank 16, alpha 32, dropout 0.1, ten more words here"
    lines = column_title(name).split("\n")
    assert len(lines) == HEADER_LINES and all(len(line) <= HEADER_CHARS for line in lines)
    assert lines[-1].endswith(" …") and not name.endswith("…")

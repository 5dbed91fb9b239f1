"""Table 5.1's differences from unified LoRA as a text forest plot: `shpers runs export --format forest`."""

from __future__ import annotations

from stored_runs import add_scored_run, spread

from shpers_core.cli.main import main
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def _shpers(ws, capsys, *argv):
    capsys.readouterr()
    rc = main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name))


def test_each_row_is_an_interval_on_one_axis_with_zero_marked(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    base = spread(12, 0.5, 1)
    with RunStore(ws.db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "base_model", {p: v - 0.15 - 0.001 * i for i, (p, v) in enumerate(base.items())},
                       name="far below")
        add_scored_run(store, "system_prompt", spread(12, 0.5, 2), name="alike")
        # The same as unified over all turns, better on the persona-dependent ones.
        # (Unequal hairs each way: tied differences send scipy's Wilcoxon to a slow permutation test.)
        add_scored_run(store, "retrieval", {p: v + 0.001 * (i + 1) * (-1) ** i for i, (p, v) in enumerate(base.items())},
                       name="better on dependent turns", dependent_shift=0.2)
    rc, out, _ = _shpers(ws, capsys, "runs", "export", "--format", "forest")
    assert rc == 0 and "over all turns" in out
    below, alike = _line(out, "far below"), _line(out, "alike")
    assert "unified" not in [line.split()[0] for line in out.splitlines() if line.strip()]  # the baseline is no row
    assert below.rstrip().endswith("worse") and alike.rstrip().endswith("no difference shown")
    zero = out.splitlines()[-3].index("┴")  # the axis marks zero under the rows
    drawn = [i for i, ch in enumerate(below) if ch in "├─┤●"]
    assert "●" in below and max(drawn) < zero and below[zero] == "│"  # wholly left of zero
    assert alike.index("├") < zero < alike.index("┤")  # the interval crosses zero
    assert _line(out, "better on dependent turns").rstrip().endswith("no difference shown")
    assert out.splitlines()[-2][zero] == "0"  # the scale names zero under its mark

    rc, out, _ = _shpers(ws, capsys, "runs", "export", "--format", "forest", "--subset", "persona_dependent")
    # Each subset's verdict is its own corrected p's, not the all-turns one.
    assert rc == 0 and "over persona-dependent turns" in out
    assert _line(out, "better on dependent turns").rstrip().endswith("better")
    rc, _, err = _shpers(ws, capsys, "runs", "export", "--subset", "other")
    assert rc == 2 and "--subset is for --format forest" in err


def test_a_table_without_a_unified_run_says_so(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        add_scored_run(store, "base_model", spread(6, 0.4, 1))
    rc, out, _ = _shpers(ws, capsys, "runs", "export", "--format", "forest")
    assert rc == 0 and out.strip() == "No row has a unified LoRA run to be compared with."

"""`shpers runs compare`: subset and metric choice, and a warning when two runs are unlike."""

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


def test_unlike_runs_are_named_with_the_setting_that_differs(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        a = add_scored_run(store, "unified_lora", spread(6, 0.4, 1), eval_params={"max_new_tokens": 64})
        b = add_scored_run(store, "base_model", spread(6, 0.4, 2), base_model="smollm2",
                           eval_params={"max_new_tokens": 32})
        c = add_scored_run(store, "system_prompt", spread(6, 0.4, 3), eval_params={"max_new_tokens": 64})
    rc, out, _ = _shpers(ws, capsys, "runs", "compare", a, b)
    assert rc == 0
    assert "base model differs: tiny-qwen2 vs smollm2" in out
    assert "max new tokens differ: 64 vs 32" in out
    rc, out, _ = _shpers(ws, capsys, "runs", "compare", a, c)
    assert rc == 0 and "warning" not in out
    assert f"shpers runs replies {c} --beside {a} --worst 10" in out  # where to read the turns behind it


def test_subset_and_metric_choose_what_is_compared(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        base = spread(8, 0.4, 1)
        a = add_scored_run(store, "unified_lora", base)
        b = add_scored_run(store, "system_prompt", base, dependent_shift=0.1)
    rc, out, _ = _shpers(ws, capsys, "runs", "compare", a, b, "--subset", "persona_dependent")
    assert rc == 0 and "persona-dependent turns" in out and "+0.100" in out and "W/T/L 8/0/0" in out
    rc, out, _ = _shpers(ws, capsys, "runs", "compare", a, b, "--subset", "other")
    assert rc == 0 and "W/T/L 0/8/0" in out
    rc, _, err = _shpers(ws, capsys, "runs", "compare", a, b, "--metric", "parameter_f1")
    assert rc == 2 and "parameter_f1" in err
    try:
        rc = main(["--workspace", str(ws.root), "runs", "compare", a, b, "--metric", "bleu"])
    except SystemExit as exc:  # argparse refuses an unknown choice itself
        rc = exc.code
    assert rc == 2 and "bleu" in capsys.readouterr().err


def test_runs_are_renamed_noted_tagged_and_listed_by_tag(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        a = add_scored_run(store, "unified_lora", spread(4, 0.4, 1), name="first")
        b = add_scored_run(store, "base_model", spread(4, 0.4, 2), name="second")
    rc, _, err = _shpers(ws, capsys, "runs", "rename", b, "first")
    assert rc == 2 and "already named 'first'" in err
    rc, out, _ = _shpers(ws, capsys, "runs", "rename", b, "base, no prompt")
    assert rc == 0
    rc, out, _ = _shpers(ws, capsys, "runs", "note", b, "--tags", "keep, baseline", "--notes", "the reference")
    assert rc == 0 and "baseline, keep" in out
    rc, out, _ = _shpers(ws, capsys, "runs", "list", "--tag", "keep")
    assert rc == 0 and b in out and a not in out and "base, no prompt" in out
    rc, out, _ = _shpers(ws, capsys, "runs", "show", b)
    assert "tags: baseline, keep  notes: the reference" in out

"""The study report (findings, table, forest plots in one Markdown file) and output files refused up front."""

from __future__ import annotations

from cli_workspace import shpers
from stored_runs import add_scored_run, spread

from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

N = 10


def test_runs_export_writes_the_report_with_each_part_once(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    base = spread(N, 0.6, 7)
    with RunStore(ws.db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "per_persona_lora", {p: v - 0.1 - 0.001 * i for i, (p, v) in enumerate(base.items())},
                       name="per persona")
    rc, out, err = shpers(ws.root, "runs", "export", "--format", "report", "--out", str(tmp_path / "r.md"))
    assert rc == 0, err
    report = (tmp_path / "r.md").read_text()
    heads = [line for line in report.splitlines() if line.startswith("#")]
    assert heads == ["# Table 5.1", "## Findings", "## The table", "## Differences from unified LoRA, all turns",
                     "## Differences from unified LoRA, persona-dependent turns"]
    assert "- **RQ1**, does an adapter per persona beat one adapter for everyone (unified LoRA)? No:" in report
    assert "| per persona |" in report and report.count("●") == 2  # the row drawn once per subset


def test_a_study_refuses_an_output_file_it_could_not_write_before_running_anything(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    for flag in ("--markdown", "--csv", "--report"):
        rc, _, err = shpers(ws.root, "study", "--preset", "smoke", "--model", "tiny-qwen2", "-q",
                            flag, str(tmp_path / "no such folder" / "out.md"))
        assert rc != 0 and "parent folder" in err and "does not exist" in err and "Traceback" not in err
    with RunStore(ws.db_path) as store:
        assert store.list_runs() == []

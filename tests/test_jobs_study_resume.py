"""A stopped study continues where it stopped: finished rows are kept, a cancelled row resumes."""

from __future__ import annotations

import re
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import pytest

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.errors import UserError
from shpers_core.events import CollectingReporter, JobCancelled
from shpers_core.jobs.study import STUDY_STEPS, plan_study, run_study, study_specs
from shpers_core.jobs.study_progress import FINISHED, NEW, RESUME, describe_progress, study_progress
from shpers_core.models.device import pick_device, pick_dtype
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

PERSONAS = ["persona_000", "persona_001", "persona_002", "persona_003"]


def _logs(reporter: CollectingReporter) -> list[str]:
    return [e.message for e in reporter.of_kind("log")]


@pytest.fixture
def workspace(shpers_cache, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(6, 9, seed=1), ws.dataset_path)
    return ws


def test_a_cancelled_study_resumes_its_row_and_keeps_the_finished_ones(workspace):
    # Stop the study at the per-persona row's first training step, as Ctrl+C or Cancel would.
    started: list[str] = []
    first = CollectingReporter(should_stop=lambda: "per_persona_lora" in started)
    first.add_sink(lambda e: started.append(e.method) if e.kind == "started" else None)
    with pytest.raises(JobCancelled):
        run_study("smoke", workspace, first, base_model="tiny-qwen2")
    with RunStore(workspace.db_path) as store:
        before = {r.name: r for r in store.list_runs()}
    assert [before[label].status for label, _, _ in STUDY_STEPS[:3]] == ["finished", "finished", "cancelled"]
    # The plan counts only the stopped row's training left after its checkpoint (this one stopped before its
    # first step saved one: tests/test_jobs_estimate.py has a row stopped part-way), and its evaluation.
    plan = StringIO()
    with redirect_stdout(plan):
        assert main(["--workspace", str(workspace.root), "study", "--preset", "smoke", "--model", "tiny-qwen2",
                     "--resume", "--plan"]) == 0
    stopped = next(line for line in plan.getvalue().splitlines() if " resume " in line)
    assert STUDY_STEPS[2][0] in stopped and stopped.endswith(", no checkpoint yet: training starts over)"), stopped

    second = CollectingReporter()
    ids = run_study("smoke", workspace, second, base_model="tiny-qwen2", resume=True)
    assert len(ids) == len(STUDY_STEPS)
    assert ids[:3] == [before[label].id for label, _, _ in STUDY_STEPS[:3]]  # kept, and the same run continued
    with RunStore(workspace.db_path) as store:
        runs = store.list_runs()
        per_persona = store.get_run(ids[2])
    assert len(runs) == len(STUDY_STEPS) and all(r.status == "finished" for r in runs)
    assert per_persona.status == "finished" and per_persona.name == STUDY_STEPS[2][0]
    logs = _logs(second)
    assert f"2 of {len(STUDY_STEPS)} rows finished before, 1 stopped and can resume from its checkpoint" in logs[0]
    assert any(f"continuing run {ids[2]} from its checkpoint" in m for m in logs)
    # The merges built on the resumed per-persona run, not on one of their own.
    with RunStore(workspace.db_path) as store:
        merge = next(r for r in store.list_runs() if r.method == "weighted_merge")
    assert merge.parent_run_id == ids[2]

    # Everything done: a third call runs nothing and returns the same runs, through the CLI too.
    out = StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        rc = main(["--workspace", str(workspace.root), "study", "--preset", "smoke", "--model", "tiny-qwen2",
                   "--resume"])
    assert rc == 0
    text = out.getvalue()
    assert f"{len(STUDY_STEPS)} of {len(STUDY_STEPS)} rows finished before" in text
    assert text.count("finished before as run") == len(STUDY_STEPS)
    assert all(f"| {label} |" in text for label, _, _ in STUDY_STEPS)
    with RunStore(workspace.db_path) as store:
        assert len(store.list_runs()) == len(STUDY_STEPS)

    # Without --resume every row would run again: the study says so before it starts.
    specs = study_specs("smoke", PERSONAS, base_model="tiny-qwen2")
    third = CollectingReporter()
    rows = plan_study(specs, workspace, runs[0].dataset_hash, third, resume=False)
    assert {r.state for r in rows} == {NEW}
    assert "every row runs again (--resume keeps them)" in _logs(third)[0]

    # A second seed on top: the plan says only the second pass runs, with its time from the speeds measured
    # here; then only it runs, and the table pools both passes row by row.
    second_pass = [s for s in study_specs("smoke", PERSONAS, base_model="tiny-qwen2", seeds=[0, 1])
                   if s.name.endswith(" seed=1")]
    plan = StringIO()
    with redirect_stdout(plan):
        rc = main(["--workspace", str(workspace.root), "study", "--preset", "smoke", "--model", "tiny-qwen2",
                   "--seeds", "0", "1", "--resume", "--plan"])
    lines = plan.getvalue().splitlines()
    assert rc == 0 and lines[0] == (f"Study 'smoke': {len(STUDY_STEPS) + len(second_pass)} rows on 4 personas, "
                                    "tiny-qwen2 (device and dtype automatic)")
    rows = [re.match(r"\s*\d+\s+(kept|resume|run)\s+(.*?)  \((.*)\)$", line) for line in lines[1:-1]]
    assert [m.group(1) for m in rows] == ["kept"] * len(STUDY_STEPS) + ["run"] * len(second_pass)
    assert [m.group(2) for m in rows[len(STUDY_STEPS):]] == [s.name for s in second_pass]
    assert all(m.group(3).startswith("about ") for m in rows[len(STUDY_STEPS):])
    assert lines[-1].startswith(f"{len(second_pass)} rows to run: about ")
    with RunStore(workspace.db_path) as store:
        assert len(store.list_runs()) == len(STUDY_STEPS)  # the plan ran nothing
    out = StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        rc = main(["--workspace", str(workspace.root), "study", "--preset", "smoke", "--model", "tiny-qwen2",
                   "--seeds", "0", "1", "--resume"])
    assert rc == 0
    with RunStore(workspace.db_path) as store:
        assert len(store.list_runs()) == len(STUDY_STEPS) + len(second_pass)
    table = [line for line in out.getvalue().splitlines() if line.startswith("| tiny-qwen2")]
    assert len(table) == len(STUDY_STEPS) and any("| 0, 1 (± " in line for line in table)


def _record(store, spec, status: str, dataset_hash: str = "h1", params: dict | None = None,
            parent: str | None = None) -> str:
    # As the runner records it: with the dtype the machine picked for the base model.
    params = {**spec.to_dict(), "dtype": pick_dtype(pick_device()), **(params or {})}
    seed = spec.train.seed if params.get("train") else 0
    rid = store.create_run(spec.method, params, spec.base_model, dataset_hash, spec.personas, name=spec.name,
                           parent_run_id=parent, seed=seed)
    if status != "created":
        store.start_run(rid)
    if status == "finished":
        store.finish_run(rid, duration_s=1.0)
    elif status in ("failed", "cancelled", "interrupted"):
        store.set_status(rid, status)
    return rid


def test_a_row_counts_as_done_only_with_the_same_settings_on_the_same_data(tmp_path):
    specs = study_specs("smoke", PERSONAS, base_model="tiny-qwen2")
    base, unified, per_persona, cluster = specs[:4]
    with RunStore(tmp_path / "s.sqlite") as store:
        kept = _record(store, base, "finished", params={"dataset_path": "/elsewhere/same.jsonl"})
        _record(store, unified, "finished", dataset_hash="other data")
        changed = {"train": {**unified.to_dict()["train"], "learning_rate": 1.0}}
        _record(store, unified, "finished", params=changed)
        _record(store, per_persona, "failed")
        stopped = _record(store, cluster, "interrupted")
        rows = study_progress(store, specs, "h1")
        assert [(r.state, r.run_id) for r in rows[:4]] == [
            (FINISHED, kept),  # the data file may lie elsewhere: its content is what counts
            (NEW, None),  # finished on other data, or with another learning rate
            (NEW, None),  # a failed run starts again
            (RESUME, stopped),
        ]
        assert {r.state for r in rows[4:]} == {NEW}
        assert describe_progress(rows) == (f"1 of {len(specs)} rows finished before, "
                                           "1 stopped and can resume from its checkpoint")
        newer = _record(store, base, "finished")
        assert study_progress(store, specs, "h1")[0].run_id == newer
        running = _record(store, unified, "running")
        with pytest.raises(UserError, match=f"'Unified LoRA' is running now as run {running}"):
            study_progress(store, specs, "h1")
    assert describe_progress([r for r in rows if r.state == NEW]) == ""


def test_a_stopped_study_names_the_command_that_continues_it():
    import shlex

    from shpers_core.cli.main import build_parser
    from shpers_core.cli.study_cmd import resume_command

    argv = ["study", "--preset", "quick", "--model", "tiny-qwen2", "--seeds", "0", "1", "--personas", "a b", "c",
            "--device", "cpu", "--dtype", "float32"]
    line = resume_command(build_parser(argv).parse_args(argv))
    assert line == ("shpers study --preset quick --model tiny-qwen2 --device cpu --dtype float32 --personas 'a b' c "
                    "--seeds 0 1 --resume")
    again = build_parser(shlex.split(line)[1:]).parse_args(shlex.split(line)[1:])
    assert (again.resume, again.seeds, again.personas, again.model) == (True, [0, 1], ["a b", "c"], "tiny-qwen2")
    # Every row, in every pass, runs where and in the dtype the study was started with.
    specs = study_specs("smoke", PERSONAS, base_model="tiny-qwen2", seeds=[0, 1], device="cpu", dtype="float32")
    assert {(s.device, s.dtype) for s in specs} == {("cpu", "float32")}


def test_a_one_seed_study_is_the_first_pass_of_a_study_over_more_seeds(tmp_path):
    one = study_specs("smoke", PERSONAS, base_model="tiny-qwen2")
    two = study_specs("smoke", PERSONAS, base_model="tiny-qwen2", seeds=[0, 1])
    by_label = {spec.name: spec for spec in one}
    with RunStore(tmp_path / "s.sqlite") as store:
        # A finished one-seed study: the per-persona run, and an exact merge built on it.
        per_persona = _record(store, by_label["Per-persona LoRA"], "finished")
        merge = _record(store, by_label["Weighted merge (exact)"], "finished", parent=per_persona)
        rows = {r.spec.name: r for r in study_progress(store, two, "h1")}
        assert rows["Per-persona LoRA seed=0"].run_id == per_persona
        assert rows["Weighted merge (exact) seed=0"].run_id == merge
        # The second pass is new: its seed differs, though its names reduce to the same rows.
        assert rows["Per-persona LoRA seed=1"].state == NEW and rows["Weighted merge (exact) seed=1"].state == NEW
    with RunStore(tmp_path / "other.sqlite") as store:
        # A merge built on a seed-1 adapter is not the one-seed study's merge (seed 0).
        seed1 = _record(store, next(s for s in two if s.name == "Per-persona LoRA seed=1"), "finished")
        _record(store, by_label["Weighted merge (exact)"], "finished", parent=seed1)
        rows = {r.spec.name: r for r in study_progress(store, one, "h1")}
        assert rows["Weighted merge (exact)"].state == NEW and rows["Per-persona LoRA"].state == NEW


def test_each_pass_names_its_own_rows_as_the_runs_its_merges_and_prefixes_build_on(workspace, monkeypatch):
    import shpers_core.jobs.study as study_module
    from shpers_core.methods.registry import get_method

    ran = []

    def fake_run_job(spec, _ws, _reporter, **_kw):
        ran.append((spec, f"r-{len(ran)}"))
        return ran[-1][1]
    monkeypatch.setattr(study_module, "run_job", fake_run_job)
    run_study("smoke", workspace, CollectingReporter(), base_model="tiny-qwen2", personas=PERSONAS, seeds=[0, 1])
    by_name = {spec.name: rid for spec, rid in ran}
    building = 0
    for spec, _rid in ran:
        wanted = get_method(spec.method).sources(spec.method_params)
        if not wanted:
            assert spec.source_run == ""
            continue
        building += 1
        seed = spec.name.rsplit("seed=", 1)[1]
        own = {"per_persona_lora": "Per-persona LoRA", "unified_lora": "Unified LoRA"}[wanted[0]]
        assert spec.source_run == by_name[f"{own} seed={seed}"], spec.name
    # A sweep's run finished later in the workspace would otherwise be "the newest" they took.
    assert building == 2 * 11  # 6 merges and 5 prefixes a pass (retrieval builds on nothing by default)


def test_a_row_that_named_its_source_counts_as_done(tmp_path):
    specs = study_specs("smoke", PERSONAS, base_model="tiny-qwen2")
    by_label = {spec.name: spec for spec in specs}
    with RunStore(tmp_path / "s.sqlite") as store:
        per_persona = _record(store, by_label["Per-persona LoRA"], "finished")
        merge_spec = by_label["Weighted merge (exact)"]
        merge = _record(store, merge_spec.replace(source_run=per_persona), "finished", parent=per_persona)
        rows = {r.spec.name: r for r in study_progress(store, specs, "h1")}
    assert rows["Weighted merge (exact)"].state == FINISHED and rows["Weighted merge (exact)"].run_id == merge

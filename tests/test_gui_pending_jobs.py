"""The jobs file a closing window leaves: read back as jobs, and a damaged one never stops the app."""

from __future__ import annotations

import json

from shpers_core.jobs.spec import build_spec
from shpers_gui.pending_jobs import PendingJob, pending_path, read_pending, save_pending


def _recorded(jobs):
    return [(j.spec.to_dict(), j.run_id) for j in jobs]


def test_jobs_read_back_as_they_were_left_and_damage_is_skipped(tmp_path, caplog):
    jobs = [PendingJob(build_spec("unified_lora", {"train.learning_rate": 1e-3}, name="a"), "r1"),
            PendingJob(build_spec("base_model", name="b"))]
    save_pending(tmp_path, jobs)
    assert _recorded(read_pending(tmp_path)) == _recorded(jobs)
    entries = json.loads(pending_path(tmp_path).read_text())
    entries.insert(1, {"spec": {"method": "no_such_method"}, "run_id": ""})
    entries.append({"spec": {"method": "unified_lora", "train": {"learning_rate": "fast"}}})
    entries.append("not a job")
    pending_path(tmp_path).write_text(json.dumps(entries))
    assert _recorded(read_pending(tmp_path)) == _recorded(jobs)
    assert caplog.text.count("ignoring a job") == 3
    pending_path(tmp_path).write_text("{ not json")
    assert read_pending(tmp_path) == []
    save_pending(tmp_path, [])
    assert not pending_path(tmp_path).exists() and read_pending(tmp_path) == []


def test_a_jobs_sweep_reads_back_and_a_damaged_one_leaves_the_job_queueable(tmp_path):
    from shpers_gui.pending_jobs import PendingSweep

    sweep = PendingSweep(3, "lora.rank", "r0", ("r1", "r2"))
    save_pending(tmp_path, [PendingJob(build_spec("unified_lora", {"lora.rank": 4}, name="a"), "", sweep)])
    (back,) = read_pending(tmp_path)
    assert back.sweep == sweep
    entries = json.loads(pending_path(tmp_path).read_text())
    for damaged in ("a sweep", {"number": "x", "parameter": 5}, None):
        entries[0]["sweep"] = damaged
        pending_path(tmp_path).write_text(json.dumps(entries))
        (back,) = read_pending(tmp_path)
        assert back.sweep is None and back.spec.lora.rank == 4


def test_the_row_a_study_merge_builds_on_reads_back_and_a_damaged_link_is_dropped(tmp_path):
    row, merge = build_spec("per_persona_lora", name="row"), build_spec("weighted_merge", name="merge")
    save_pending(tmp_path, [PendingJob(row), PendingJob(merge, builds_on=0)])
    assert [j.builds_on for j in read_pending(tmp_path)] == [None, 0]
    entries = json.loads(pending_path(tmp_path).read_text())
    for damaged in ("0", True, [0]):
        entries[1]["builds_on"] = damaged
        pending_path(tmp_path).write_text(json.dumps(entries))
        assert [(j.spec.name, j.builds_on) for j in read_pending(tmp_path)] == [("row", None), ("merge", None)]

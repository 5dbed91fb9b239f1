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

"""The Jobs tab's "Where": this machine for local jobs, the Ray node and device the worker reported for
Ray jobs, live while the job runs and from the store once the window was closed and opened again."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from app_window import generated_workspace, open_window  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from shpers_core.distributed.placement import Placed, placement_line  # noqa: E402
from shpers_core.jobs.spec import build_spec  # noqa: E402
from shpers_core.store.host import now_iso  # noqa: E402
from shpers_gui.job_queue import FINISHED, RUNNING, Job  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


def where_column(jobs_view) -> dict[str, str]:
    model = jobs_view.model
    assert model.headerData(model.WHERE, Qt.Orientation.Horizontal) == "Where"
    return {model.job(r).label: model.index(r, model.WHERE).data() for r in range(model.rowCount())}


def stored_run(session, name: str, log: list[str]) -> str:
    """A finished run as a Ray driver or a local job leaves it: started, then its log lines."""
    store = session.store()
    run_id = store.create_run("unified_lora", {}, "tiny-qwen2", "h", ["p1"], name=name)
    store.start_run(run_id)
    store.add_log_lines(run_id, [(now_iso(), "info", m) for m in log])
    store.finish_run(run_id, {})
    return run_id


def test_where_shows_this_machine_or_the_ray_node_the_worker_reported(qtbot, tmp_path):
    ws = generated_workspace(tmp_path / "ws", 2)
    on_gpu = placement_line(Placed("a1b2c3d4e5f6", 4242, ("0",), 1, ip="10.0.0.7"))
    with open_window(qtbot, ws, tmp_path) as win:
        queue = win.session.jobs
        queue.max_running = 0  # nothing starts: the rows are driven by hand, as the job's events would
        local = queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name="local job"))
        remote = queue.submit(build_spec("unified_lora", base_model="tiny-qwen2", name="ray job"))
        assert where_column(win.jobs) == {"local job": "", "ray job": ""}  # waiting: not placed yet
        for job in (local, remote):
            job.status = RUNNING
            queue.job_changed.emit(job)
        assert where_column(win.jobs) == {"local job": "this machine", "ray job": "this machine"}
        queue._on_log(remote, f"[info] {on_gpu}")  # as the child process relays the driver's line
        assert where_column(win.jobs) == {"local job": "this machine", "ray job": "Ray node 10.0.0.7 (GPU 0)"}
        on_cpu = placement_line(Placed("f6e5d4c3b2a1", 7, (), 2, ip="10.0.0.8"))
        queue._on_log(remote, f"[info] {on_cpu}")  # retried elsewhere after a lost worker
        assert where_column(win.jobs)["ray job"] == "Ray node 10.0.0.8 (CPU)"
        for job in (local, remote):
            queue.cancel(job)

        # What the store keeps: a run that ran on Ray, one that ran here, one resumed here after Ray.
        session = win.session
        ray_run = stored_run(session, "ray run", ["preparing", on_gpu, "base model tiny-qwen2"])
        here_run = stored_run(session, "local run", ["base model tiny-qwen2"])
        back_run = stored_run(session, "resumed here", [on_gpu])
        time.sleep(0.01)  # a resume comes later than the attempt before it (stamps are in milliseconds)
        session.store().start_run(back_run)  # its latest start comes after the Ray placement
        session.store().finish_run(back_run, {})

    with open_window(qtbot, ws, tmp_path) as win:  # a restart: only the store remembers
        queue = win.session.jobs
        queue.max_running = 0
        for run_id in (ray_run, here_run, back_run):
            record = win.session.store().get_run(run_id)
            job = Job(build_spec("unified_lora", base_model="tiny-qwen2", name=record.name), run_id=run_id,
                      status=FINISHED)
            queue.jobs.append(job)
            queue.job_added.emit(job)
        assert where_column(win.jobs) == {"ray run": "Ray node 10.0.0.7 (GPU 0)", "local run": "this machine",
                                          "resumed here": "this machine"}

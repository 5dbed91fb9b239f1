"""The worker side of a Ray job: the job in a scratch workspace, its events and files sent to the driver."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import traceback
from pathlib import Path

from shpers_core.distributed.channel import RemoteReporter
from shpers_core.distributed.models import ModelRef, load_on_worker
from shpers_core.distributed.options import RayOptions, set_worker_options, shared_path
from shpers_core.distributed.placement import Placed
from shpers_core.distributed.scratch import worker_scratch
from shpers_core.distributed.transfer import put_shared, read_shared, read_tree, run_ids, write_files
from shpers_core.distributed.watcher import CheckpointWatcher
from shpers_core.errors import UserError
from shpers_core.events import JobCancelled
from shpers_core.jobs.runner import explain_failure, run_job
from shpers_core.jobs.spec import JobSpec
from shpers_core.third_party import hide_third_party_deprecations
from shpers_core.workspace import Workspace


def _db_bytes(path: Path) -> bytes:
    """The store file with its write-ahead log folded in."""
    with tempfile.TemporaryDirectory(prefix="shpers-out-") as tmp:
        out = Path(tmp) / "out.sqlite"
        src, dst = sqlite3.connect(path), sqlite3.connect(out)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            src.close()
            dst.close()
        return out.read_bytes()


def run_on_worker(spec_dict: dict, run_id: str, seed_db: bytes, files: dict | str, dataset, channel,
                  attempt: int, model=None, options: RayOptions | None = None) -> dict:
    """The Ray task: the job in a scratch workspace on the worker, events sent as they happen.

    ``files`` are the run folders the job reads, or the name of their batch in the shared folder.
    ``model`` (a :class:`~shpers_core.distributed.models.ModelRef`) says how the base model gets here.
    Never raises for the job's own errors: they come back as the outcome, with the store rows that
    say so, and the driver re-raises them. Only a lost worker ends the task without a result.
    """
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    hide_third_party_deprecations()
    options = options or RayOptions()
    set_worker_options(options)
    shared = shared_path(options, run_id)
    with worker_scratch("ray") as scratch:
        reporter = RemoteReporter(channel)
        try:
            ws = Workspace.open(scratch)
            ws.db_path.write_bytes(seed_db)
            write_files(ws.root, read_shared(shared, files) if isinstance(files, str) else files)
            ctx = ray.get_runtime_context()
            reporter.emit(Placed(ctx.get_node_id()[:12], os.getpid(), tuple(str(g) for g in ray.get_gpu_ids()), attempt,
                                 ip=ray.util.get_node_ip_address()))
            watcher = CheckpointWatcher(ws.root, run_id, reporter.send, shared=shared)
            watcher.start()
            outcome, message, tb = "finished", "", ""
            spec = JobSpec.from_dict(spec_dict)
            try:
                base = load_on_worker(model or ModelRef(spec.base_model), spec.device, spec.dtype, reporter.log)
                run_job(spec, ws, reporter, dataset=dataset, run_id=run_id, base=base)
            except JobCancelled:
                outcome = "cancelled"
            except UserError as exc:
                outcome, message = "user_error", str(exc)
            except Exception as exc:  # noqa: BLE001 - sent to the driver, which raises it
                outcome, message, tb = "failed", explain_failure(exc), traceback.format_exc()
            watcher.stop()
            db = _db_bytes(ws.db_path)
            seeded = set(run_ids(seed_db))
            mine = [rid for rid in run_ids(db) if rid not in seeded]
            out_files = {}
            for rid in [run_id, *mine]:
                out_files.update(read_tree(ws.root, Path("runs") / rid))
            if shared is not None:
                out_files = put_shared(shared, out_files)
            return {"outcome": outcome, "message": message, "traceback": tb, "db": db, "files": out_files,
                    "new_runs": mine}
        finally:
            set_worker_options(None)
            reporter.close()

"""Run a job: validate, record, train or build, evaluate, store; report events throughout."""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

from shpers_core.data.schema import Dataset
from shpers_core.errors import UserError
from shpers_core.events import Cancelled, Failed, Finished, JobCancelled, Reporter, Started
from shpers_core.jobs.spec import JobSpec, resolved
from shpers_core.workspace import Workspace

log = logging.getLogger(__name__)

_BASE_CACHE: dict[tuple, object] = {}


def load_dataset_for(spec: JobSpec, workspace: Workspace) -> Dataset:
    from shpers_core.data import load_dataset

    path = Path(spec.dataset_path) if spec.dataset_path else workspace.dataset_path
    if not path.exists():
        raise UserError(f"no dataset at {path}: run `shpers data generate` or give --dataset")
    return load_dataset(path)


def load_base_cached(name: str, device: str | None, dtype: str | None):
    """Base models are loaded once per process; methods restore them after use."""
    from shpers_core.models import load_base

    key = (name, device, dtype)
    if key not in _BASE_CACHE:
        _BASE_CACHE.clear()  # one base model in memory at a time
        _BASE_CACHE[key] = load_base(name, device=device, dtype=dtype)
    return _BASE_CACHE[key]


def select_personas(spec: JobSpec, dataset: Dataset) -> list[str]:
    if not spec.personas:
        return dataset.persona_ids
    missing = [p for p in spec.personas if p not in dataset.personas]
    if missing:
        raise UserError(f"persona {missing[0]!r} is not in the dataset ({len(dataset.personas)} personas, "
                        f"e.g. {dataset.persona_ids[0]})")
    return list(dict.fromkeys(spec.personas))


def find_matching_run(store, method: str, base_model: str, dataset_hash: str, personas: list[str]) -> str | None:
    """Newest finished run of ``method`` on the same base model and data covering ``personas``."""
    for run in store.list_runs(status="finished", method=method):
        if run.base_model == base_model and run.dataset_hash == dataset_hash and set(personas) <= set(run.personas):
            return run.id
    return None


def run_job(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, store=None, base=None,
            dataset: Dataset | None = None, run_id: str | None = None) -> str:
    """Run ``spec`` to the end and return its run id; ``run_id`` resumes an interrupted run.

    User mistakes raise :class:`UserError` before anything is written to the store.
    """
    from shpers_core.data import split_dataset
    from shpers_core.evaluation.evaluate import evaluate_plan
    from shpers_core.jobs.context import MethodContext
    from shpers_core.methods.registry import get_method
    from shpers_core.store import RunStore, StoreSink

    method = get_method(spec.method)
    mp, lora, train, ev = resolved(spec)
    dataset = dataset or load_dataset_for(spec, workspace)
    personas = select_personas(spec, dataset)
    own_store = store is None
    store = store or RunStore(workspace.db_path)
    if run_id is None:
        run_id = store.create_run(
            spec.method, spec.to_dict(), spec.base_model, dataset.content_hash(), personas,
            seed=train.seed, dataset_path=str(spec.dataset_path or workspace.dataset_path), name=spec.name,
        )
    sink = StoreSink(workspace.db_path, run_id)
    job_reporter = Reporter(sink, reporter.should_stop)
    job_reporter.add_sink(reporter.emit)
    started = time.perf_counter()
    try:
        store.start_run(run_id)
        job_reporter.emit(Started(run_id, spec.method, 0))
        base = base or load_base_cached(spec.base_model, spec.device, spec.dtype)
        ctx = MethodContext(spec=spec, workspace=workspace, store=store, run_id=run_id, reporter=job_reporter,
                            base=base, dataset=dataset, splits=split_dataset(dataset, seed=ev.split_seed),
                            personas=personas, lora=lora, train=train, eval=ev)
        plan = method.run(ctx, mp)
        write_recipes(ctx.run_dir, {pid: plan.recipe(pid) for pid in personas})
        train_seconds = time.perf_counter() - started
        result = evaluate_plan(ctx, plan)
        job_reporter.check()
        for subset, values in result.metrics.items():
            store.set_metrics(run_id, values, subset=subset)
        rows = [(pid, metric, subset, value)
                for subset, per_metric in result.persona_scores.items()
                for metric, by_persona in per_metric.items()
                for pid, value in by_persona.items()]
        store.add_persona_scores(run_id, rows)
        store.add_predictions(run_id, [t.__dict__ for t in result.turns])
        store.set_metrics(run_id, {"eval_seconds": time.perf_counter() - started - train_seconds}, subset="info")
        store.finish_run(run_id, duration_s=train_seconds, trainable_params=ctx.trainable_params)
        job_reporter.emit(Finished(run_id, result.metrics["all"]))
        return run_id
    except JobCancelled:
        store.cancel_run(run_id)
        job_reporter.emit(Cancelled(run_id))
        raise
    except UserError as exc:
        store.fail_run(run_id, str(exc))
        job_reporter.emit(Failed(run_id, str(exc)))
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        log.error("run %s failed:\n%s", run_id, tb)
        store.fail_run(run_id, _explain(exc))
        job_reporter.emit(Failed(run_id, _explain(exc), tb))
        raise
    finally:
        sink.close()
        if own_store:
            store.close()


def write_recipes(run_dir: Path, recipes: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".plan.json.tmp"
    tmp.write_text(json.dumps(recipes, indent=1))
    tmp.replace(run_dir / "plan.json")


def _explain(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"{text} — out of memory: lower train.batch_size or eval.eval_batch_size, "
                "train.max_length, or choose a smaller base model")
    return text

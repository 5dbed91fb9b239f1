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


def check_base_model(name: str) -> None:
    """:class:`ModelError` now for a model name or folder that cannot load, before a run is recorded.

    Only what needs no loading: a hub id is tried when the model loads.
    """
    from shpers_core.models import MODEL_NAMES, ModelError
    from shpers_core.models.pretrained import check_local_folder, is_hub_id, looks_like_path

    name = name.strip()
    if name in MODEL_NAMES:
        return
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        check_local_folder(path)
    elif not is_hub_id(name):
        raise ModelError(f"unknown model '{name}': use one of {', '.join(MODEL_NAMES)}, a model folder or a hub id "
                         "(org/name)")


def check_cluster_count(method: str, params, personas: list[str]) -> None:
    """A ``k`` larger than the persona count fails now, not after a source run has been trained."""
    k = getattr(params, "k", None)
    if isinstance(k, int) and getattr(params, "scope", "cluster") == "cluster" and k > len(personas):
        raise UserError(f"{method}: k={k} is larger than the {len(personas)} selected personas; "
                        "lower k or select more personas")


def check_adapters_fit(plan, model) -> None:
    """:class:`AdapterError` naming the folder when an adapter of ``plan`` was made for another base model."""
    from shpers_core.training.adapters import check_adapter_fits

    seen = set()
    for adapter in plan.adapters.values():
        if adapter is not None and id(adapter) not in seen:
            seen.add(id(adapter))
            check_adapter_fits(adapter, model)


def find_matching_run(store, method: str, base_model: str, dataset_hash: str, personas: list[str]) -> str | None:
    """Newest finished run of ``method`` on the same base model and data covering ``personas``."""
    for run in store.list_runs(status="finished", method=method):
        if run.base_model == base_model and run.dataset_hash == dataset_hash and set(personas) <= set(run.personas):
            return run.id
    return None


def run_job(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, store=None, base=None,
            dataset: Dataset | None = None, run_id: str | None = None) -> str:
    """Run ``spec`` to the end and return its run id; ``run_id`` resumes an interrupted run.

    User mistakes raise :class:`UserError` before anything is written to the store. The job uses
    every physical core, or one thread when another process computes already (see ``threads.py``).
    """
    from shpers_core.threads import computing

    with computing():
        return _run_job(spec, workspace, reporter, store=store, base=base, dataset=dataset, run_id=run_id)


def _run_job(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, store=None, base=None,
             dataset: Dataset | None = None, run_id: str | None = None) -> str:
    from shpers_core.data import split_dataset
    from shpers_core.evaluation.evaluate import evaluate_plan
    from shpers_core.jobs.context import MethodContext
    from shpers_core.methods.registry import get_method
    from shpers_core.store import RunStore, StoreSink

    method = get_method(spec.method)
    mp, lora, train, ev = resolved(spec)
    dataset = dataset or load_dataset_for(spec, workspace)
    personas = select_personas(spec, dataset)
    check_cluster_count(spec.method, mp, personas)
    if base is None:
        check_base_model(spec.base_model)
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
        record_precision(store, run_id, spec, base, job_reporter)
        ctx = MethodContext(spec=spec, workspace=workspace, store=store, run_id=run_id, reporter=job_reporter,
                            base=base, dataset=dataset, splits=split_dataset(dataset, seed=ev.split_seed),
                            personas=personas, lora=lora, train=train, eval=ev)
        plan = method.run(ctx, mp)
        check_adapters_fit(plan, base.model)
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
        store.set_metrics(run_id, {"eval_seconds": time.perf_counter() - started - train_seconds,
                                   **speed_info(ctx, result)}, subset="info")
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
        from shpers_core.training.checkpoint import write_fault

        tb = traceback.format_exc()
        message = explain_failure(exc)
        # Memory or disk the user can lower or free is not a bug: one line, not a traceback.
        lacking = out_of_memory(exc) or write_fault(exc) is not None
        log.log(logging.INFO if lacking else logging.ERROR, "run %s failed:\n%s", run_id, tb)
        store.fail_run(run_id, message)
        job_reporter.emit(Failed(run_id, message, tb))
        if lacking:
            raise ResourceError(message) from exc
        raise
    finally:
        sink.close()
        if own_store:
            store.close()


def record_precision(store, run_id: str, spec: JobSpec, base, reporter: Reporter) -> None:
    """Write the dtype the base model runs in into the run's stored spec (so a resume and chat use it too)."""
    if spec.dtype != base.dtype:
        store.update_run(run_id, params={**spec.to_dict(), "dtype": base.dtype})
    reporter.log(f"base model {base.name} in {base.dtype} on {base.device}; trained weights, their gradients, "
                 "optimiser state and the loss in float32")


def speed_info(ctx, result) -> dict[str, float]:
    """The run's training tokens/s, padding share and evaluation turns/s, for its info metrics."""
    info = {"eval_turns_per_s": result.turns_per_second, "eval_turns_truncated": float(result.truncated_turns)}
    if ctx.train_tokens:
        info["train_tokens"] = float(ctx.train_tokens)
        info["train_tokens_per_s"] = ctx.train_tokens / ctx.train_seconds if ctx.train_seconds > 0 else 0.0
        info["train_padding_share"] = ctx.train_padded / (ctx.train_padded + ctx.train_tokens)
    return info


def write_recipes(run_dir: Path, recipes: dict) -> None:
    from shpers_core.training.checkpoint import atomic_write_text

    atomic_write_text(run_dir / "plan.json", json.dumps(recipes, indent=1))


class ResourceError(UserError):
    """A job ran out of memory or disk space; the message says what to lower or free."""


def out_of_memory(exc: BaseException) -> bool:
    """A CPU allocation that failed ("can't allocate memory"), a GPU one ("out of memory"), or Python's."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def explain_failure(exc: BaseException) -> str:
    """The one line a failed run shows: the error, and for a lack of memory or disk what to do."""
    from shpers_core.training.checkpoint import write_fault

    lines = str(exc).strip().splitlines()
    if out_of_memory(exc):
        return (f"{type(exc).__name__}: {lines[0] if lines else ''} — out of memory: lower train.batch_size or "
                "eval.eval_batch_size, train.max_length, or choose a smaller base model")
    text = f"{type(exc).__name__}: {exc}"
    why = write_fault(exc)
    return f"{text} — {why}, then resume the run" if why else text

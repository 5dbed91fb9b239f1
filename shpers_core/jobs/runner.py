"""Run a job: validate, record, train or build, evaluate, store; report events throughout."""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

import torch

from shpers_core.atomic import atomic_write_text, write_fault
from shpers_core.data import load_dataset, split_dataset
from shpers_core.data.library import archive_path, remember
from shpers_core.data.schema import Dataset
from shpers_core.errors import UserError
from shpers_core.evaluation.evaluate import evaluate_plan
from shpers_core.events import Cancelled, Failed, Finished, JobCancelled, Reporter, Started
from shpers_core.jobs.estimate import job_workload
from shpers_core.jobs.sources import source_runs
from shpers_core.jobs.spec import JobSpec, source_spec
from shpers_core.methods.context import MethodContext
from shpers_core.methods.registry import get_method
from shpers_core.models import MODEL_NAMES, ModelError, load_base
from shpers_core.models.device import check_device, dtype_reason, pick_dtype, torch_dtype
from shpers_core.models.pretrained import check_local_folder, is_hub_id, looks_like_path
from shpers_core.params import ParamError, Params
from shpers_core.store import RunStore, StoreSink
from shpers_core.threads import computing
from shpers_core.training.adapters import AdapterError, check_adapter_fits, load_lora_adapter
from shpers_core.workspace import Workspace

log = logging.getLogger(__name__)

_BASE_CACHE: dict[tuple, object] = {}


def load_dataset_for(spec: JobSpec, workspace: Workspace, dataset_hash: str = "") -> Dataset:
    """The spec's dataset; with ``dataset_hash`` (a stored run's) the one it used, even after an import."""
    if dataset_hash and not spec.dataset_path and archive_path(workspace, dataset_hash).exists():
        return load_dataset(archive_path(workspace, dataset_hash))
    path = Path(spec.dataset_path) if spec.dataset_path else workspace.dataset_path
    if not path.exists():
        raise UserError(f"no dataset at {path}: run `shpers data generate` or give --dataset")
    dataset = load_dataset(path)
    if dataset_hash and dataset.content_hash() != dataset_hash:
        raise UserError(f"the run used dataset {dataset_hash}, which is no longer in the workspace "
                        f"({path} is now {dataset.content_hash()})")
    return dataset


def load_base_cached(name: str, device: str | None, dtype: str | None):
    """Base models are loaded once per process; methods restore them after use."""
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
    name = name.strip()
    if name in MODEL_NAMES:
        return
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        check_local_folder(path)
    elif not is_hub_id(name):
        raise ModelError(f"unknown model '{name}': use one of {', '.join(MODEL_NAMES)}, a model folder or a hub id "
                         "(org/name)")


def check_cluster_count(method: str, params: Params, personas: list[str]) -> None:
    """Settings that cannot work on this selection (a ``k`` above the persona count) fail now, not
    after a source run has been trained; each parameter class says what it needs."""
    params.check_persona_count(method, len(personas))


def check_device_and_dtype(device: str | None, dtype: str | None) -> None:
    """:class:`ModelError` now for a device this machine lacks or an unknown dtype."""
    if device:
        check_device(device)
    if dtype:
        torch_dtype(dtype)


def lora_module_names(model) -> list[str]:
    """Names LoRA can target in ``model``: the leaf names of its linear layers but the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def check_target_modules(target_modules, model) -> None:
    """A ``target_modules`` entry that names no linear layer of the model's blocks fails now, listing valid ones."""
    valid = lora_module_names(model)
    if not target_modules:
        raise ParamError(f"LoRA: target_modules is empty; give one or more of {', '.join(valid)}")
    for name in target_modules:
        if name not in valid:
            hint = " (give the last part of a module's name, not its path)" if "." in name else ""
            raise ParamError(f"LoRA: target_modules entry {name!r} is not a linear layer of this model{hint}; "
                             f"valid: {', '.join(valid)}")


def check_persona_adapters(store, run_id: str, personas: list[str]) -> None:
    """A run that saved per-persona adapters must hold one readable adapter of its own for every persona.

    Raises :class:`AdapterError` otherwise, so the run is failed, not finished with some personas
    silently answered by another's adapter or none.
    """
    arts = [a for a in store.artefacts(run_id, kind="adapter") if a.persona_id is not None]
    if not arts:
        return
    by_persona: dict[str, list] = {}
    for art in arts:
        by_persona.setdefault(art.persona_id, []).append(art.path)
    folders: dict[str, str] = {}
    for pid in personas:
        paths = by_persona.get(pid)
        if not paths:
            raise AdapterError(f"run {run_id} has no adapter for persona {pid!r}")
        if len(set(paths)) > 1:
            raise AdapterError(f"run {run_id} has {len(set(paths))} adapters for persona {pid!r}")
        key = str(paths[0].resolve())
        if key in folders:
            raise AdapterError(f"personas {folders[key]!r} and {pid!r} share the adapter folder {paths[0]}")
        folders[key] = pid
        load_lora_adapter(paths[0])


def check_adapters_fit(plan, model) -> None:
    """:class:`AdapterError` naming the folder when an adapter of ``plan`` was made for another base model."""
    seen = set()
    for adapter in plan.adapters.values():
        if adapter is not None and id(adapter) not in seen:
            seen.add(id(adapter))
            check_adapter_fits(adapter, model)


def resolve_sources(ctx: MethodContext, sources: dict[str, str | None]) -> float:
    """Put the run of each method the job builds on into ``ctx.sources``, training one first where
    ``sources`` (from :func:`~shpers_core.jobs.sources.source_runs`) has none; returns the seconds spent
    training such runs here.

    A trained source gets this run's LoRA and evaluation settings.
    """
    trained = 0.0
    for source, found in sources.items():
        if found:
            named = found == ctx.spec.source_run
            ctx.reporter.log(f"using {source} run {found}" + (" (named by the job)" if named else ", the newest"))
        else:
            ctx.reporter.log(f"no finished {source} run for these personas: training one first")
            sub = source_spec(ctx.spec, source, ctx.personas)
            began = time.perf_counter()
            found = run_job(sub, ctx.workspace, ctx.reporter, store=ctx.store, base=ctx.base, dataset=ctx.dataset)
            trained += time.perf_counter() - began
        ctx.sources[source] = found
    return trained


def run_job(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, store=None, base=None,
            dataset: Dataset | None = None, run_id: str | None = None) -> str:
    """Run ``spec`` to the end and return its run id; ``run_id`` resumes an interrupted run.

    User mistakes raise :class:`UserError` before anything is written to the store. The job uses
    every physical core, or one thread when another process computes already (see ``threads.py``).
    """
    with computing():
        return _run_job(spec, workspace, reporter, store=store, base=base, dataset=dataset, run_id=run_id)


def _write_buffered(sink: StoreSink, run_id: str) -> None:
    """Write the sink's buffered curve points and log lines before a run is marked ended.

    Best effort: on the way out of a failure (a full disk, say) the status still has to be set; the
    rows stay buffered and the ending event's flush tries them again.
    """
    try:
        sink.flush()
    except Exception:  # noqa: BLE001
        log.warning("run %s: its last curve points and log lines could not be written yet", run_id, exc_info=True)


def _run_job(spec: JobSpec, workspace: Workspace, reporter: Reporter, *, store=None, base=None,
             dataset: Dataset | None = None, run_id: str | None = None) -> str:
    method = get_method(spec.method)
    mp, lora, train, ev = spec.method_params, spec.lora, spec.train, spec.eval
    if dataset is None and run_id is not None:
        with RunStore(workspace.db_path) as s:
            dataset = load_dataset_for(spec, workspace, s.get_run(run_id).dataset_hash)
    dataset = dataset or load_dataset_for(spec, workspace)
    personas = select_personas(spec, dataset)
    check_cluster_count(spec.method, mp, personas)
    if base is None:
        check_base_model(spec.base_model)
        check_device_and_dtype(spec.device, spec.dtype)
        # Loaded before the run is recorded, so a target module the model lacks is refused
        # without leaving a failed run (the model is cached for the job anyway).
        try:
            base = load_base_cached(spec.base_model, spec.device, spec.dtype)
        except Exception as exc:
            if out_of_memory(exc):
                raise ResourceError(explain_failure(exc)) from exc
            raise
    if method.shows_lora_form:
        check_target_modules(lora.target_modules, base.model)
    own_store = store is None
    store = store or RunStore(workspace.db_path)
    try:
        # A source run the job cannot build on is refused before the run is recorded.
        spec, sources = source_runs(store, spec, base.name, dataset.content_hash(), personas)
    except UserError:
        if own_store:
            store.close()
        raise
    if run_id is None and not spec.dataset_path:
        remember(workspace, dataset)  # a later import must not take a run's data away
    # A resumed run trains only what its checkpoint had left: its characters would not match its tokens.
    fresh = run_id is None
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
        record_precision(store, run_id, spec, base, job_reporter)
        ctx = MethodContext(spec=spec, workspace=workspace, store=store, run_id=run_id, reporter=job_reporter,
                            base=base, dataset=dataset, splits=split_dataset(dataset, seed=ev.split_seed),
                            personas=personas, lora=lora, train=train, eval=ev)
        sources_seconds = resolve_sources(ctx, sources)
        plan = method.run(ctx, mp)
        check_adapters_fit(plan, base.model)
        check_persona_adapters(store, run_id, personas)
        write_recipes(ctx.run_dir, {pid: plan.recipe(pid) for pid in personas}, workspace, ctx.folder_names)
        train_seconds = time.perf_counter() - started
        result = evaluate_plan(ctx, plan)
        job_reporter.check()
        rows = [(pid, metric, subset, value)
                for subset, per_metric in result.persona_scores.items()
                for metric, by_persona in per_metric.items()
                for pid, value in by_persona.items()]
        # Its curves and log lines are in before the run reads as finished: one who waits for the
        # status (the app, a script) sees them whole.
        sink.flush()
        # One transaction: a run whose results could not all be written (a full disk, a file size
        # limit) shows no metrics at all rather than complete-looking ones.
        with store.transaction():
            for subset, values in result.metrics.items():
                store.set_metrics(run_id, values, subset=subset)
            store.add_persona_scores(run_id, rows)
            store.add_predictions(run_id, [t.__dict__ for t in result.turns])
            # What came before evaluation besides training tokens and the runs trained to build on: the
            # sanity check, validation, clustering, merging, saving. Later estimates add it.
            other = max(0.0, train_seconds - ctx.train_seconds - sources_seconds)
            store.set_metrics(run_id, {"eval_seconds": time.perf_counter() - started - train_seconds,
                                       "other_seconds": other, **speed_info(ctx, result, counted=fresh)},
                              subset="info")
            store.finish_run(run_id, duration_s=train_seconds, trainable_params=ctx.trainable_params)
        job_reporter.emit(Finished(run_id, result.metrics["all"]))
        return run_id
    except JobCancelled:
        _write_buffered(sink, run_id)
        store.cancel_run(run_id)
        job_reporter.emit(Cancelled(run_id))
        raise
    except UserError as exc:
        _write_buffered(sink, run_id)
        store.fail_run(run_id, str(exc))
        job_reporter.emit(Failed(run_id, str(exc)))
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        message = explain_failure(exc)
        # Memory or disk the user can lower or free is not a bug: one line, not a traceback.
        lacking = out_of_memory(exc) or write_fault(exc) is not None
        log.log(logging.INFO if lacking else logging.ERROR, "run %s failed:\n%s", run_id, tb)
        _write_buffered(sink, run_id)
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
    why = dtype_reason(base.device)
    if spec.dtype:
        automatic = pick_dtype(base.device)
        # A dtype this machine computes more slowly in (bf16 on a CPU without fast bf16 products) is worth a word.
        why = "set in the run" + ("" if base.dtype == automatic else f"; automatic would take {automatic}: {why}")
    reporter.log(f"base model {base.name} in {base.dtype} on {base.device} ({why}); trained weights, their "
                 "gradients, optimiser state and the loss in float32")


def speed_info(ctx, result, counted: bool = True) -> dict[str, float]:
    """The run's training tokens/s, padding share and evaluation turns/s, for its info metrics.

    With ``counted`` (a run trained from its start, to its last epoch), also the characters of training text
    the job estimate counts, so that later estimates turn characters into this model's tokens.
    """
    info = {"eval_turns_per_s": result.turns_per_second, "eval_turns_truncated": float(result.truncated_turns)}
    if ctx.train_tokens:
        info["train_tokens"] = float(ctx.train_tokens)
        info["train_tokens_per_s"] = ctx.train_tokens / ctx.train_seconds if ctx.train_seconds > 0 else 0.0
        info["train_padding_share"] = ctx.train_padded / (ctx.train_padded + ctx.train_tokens)
        # Early stopping ends before the last epoch: fewer tokens than the characters counted.
        if counted and not ctx.train.early_stopping_patience:
            info["train_chars"] = float(job_workload(ctx.spec, ctx.dataset).train_chars)
    return info


def write_recipes(run_dir: Path, recipes: dict, workspace: Workspace | None = None,
                  names: dict[str, str] | None = None) -> None:
    """``plan.json``; with ``workspace``, its file paths relative to it (a moved workspace still works).

    ``names`` (folder -> name as written) adds ``<key>_name`` beside each path, so what is shown is
    the persona id or cluster name, not its derived folder name.
    """
    if names:
        recipes = {pid: {**recipe, **{f"{k}_name": names[str(recipe[k])] for k in RECIPE_PATHS
                                      if recipe.get(k) and str(recipe[k]) in names}}
                   for pid, recipe in recipes.items()}
    if workspace is not None:
        recipes = {pid: {k: workspace.stored(v) if k in RECIPE_PATHS and v else v for k, v in recipe.items()}
                   for pid, recipe in recipes.items()}
    atomic_write_text(run_dir / "plan.json", json.dumps(recipes, indent=1))


RECIPE_PATHS = ("adapter", "soft_prompt", "kv_prefix")


class ResourceError(UserError):
    """A job ran out of memory or disk space; the message says what to lower or free."""


def out_of_memory(exc: BaseException) -> bool:
    """A CPU allocation that failed ("can't allocate memory"), a GPU one ("out of memory"), or Python's."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def explain_failure(exc: BaseException) -> str:
    """The one line a failed run shows: the error, and for a lack of memory or disk what to do."""
    lines = str(exc).strip().splitlines()
    if out_of_memory(exc):
        return (f"{type(exc).__name__}: {lines[0] if lines else ''} — out of memory: lower train.batch_size or "
                "eval.eval_batch_size, train.max_length, or choose a smaller base model")
    text = f"{type(exc).__name__}: {exc}"
    why = write_fault(exc)
    return f"{text} — {why}, then resume the run" if why else text

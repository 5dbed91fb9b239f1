"""Which finished run a merge or prefix builds on.

Merges start from a per-persona LoRA run's adapters, prefixes and retrieval from a unified LoRA
run's adapter (``MethodSpec.requires``). By default that is the newest such run on the same base
model, data and personas; a job may name one instead (``JobSpec.source_run``), so that a merge of
adapters trained at another learning rate, or a sweep ``--like`` a merge, builds on the adapters
meant and not on whichever run finished last.
"""

from __future__ import annotations

from shpers_core.errors import UserError
from shpers_core.methods.registry import get_method


def find_matching_run(store, method: str, base_model: str, dataset_hash: str, personas: list[str]) -> str | None:
    """Newest finished run of ``method`` on the same base model and data covering ``personas``."""
    for run in store.list_runs(status="finished", method=method):
        if run.base_model == base_model and run.dataset_hash == dataset_hash and set(personas) <= set(run.personas):
            return run.id
    return None


def check_source_run(store, spec, base_model: str, dataset_hash: str, personas: list[str]) -> tuple[str, str] | None:
    """``spec.source_run`` as (method, full run id), or None when the job leaves the choice to the store.

    A :class:`UserError` names the run and what is wrong when the job cannot build on it: the method
    builds on no run or on another method's, or the run is unfinished, on another base model or data, or
    lacks a persona of the job.
    """
    if not spec.source_run:
        return None
    wanted = get_method(spec.method).sources(spec.method_params)
    if not wanted:
        raise UserError(f"{spec.method} builds on no other run; leave out the source run {spec.source_run}")
    run = store.get_run(spec.source_run)
    if run.method not in wanted:
        raise UserError(f"{spec.method} builds on a {' or '.join(wanted)} run; run {run.id} is {run.method}")
    if run.status != "finished":
        raise UserError(f"run {run.id} is {run.status}; a job can build only on a finished run")
    if run.base_model != base_model:
        raise UserError(f"run {run.id} trained {run.base_model}, not {base_model}: its adapters do not fit this job")
    if run.dataset_hash != dataset_hash:
        raise UserError(f"run {run.id} trained on other data than this job's dataset")
    missing = [p for p in personas if p not in run.personas]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"run {run.id} has no adapter for persona {missing[0]}{more} of this job")
    return run.method, run.id


def source_runs(store, spec, base_model: str, dataset_hash: str, personas: list[str]):
    """``spec`` naming the full id of the run it names (whatever start of it was typed), and for each method
    it builds on, the run it builds on: the one it names, else the newest matching (None: none is stored,
    one must be trained first). A :class:`UserError` as :func:`check_source_run` raises it."""
    named = check_source_run(store, spec, base_model, dataset_hash, personas)
    out: dict[str, str | None] = {}
    for method in get_method(spec.method).sources(spec.method_params):
        if named is not None and named[0] == method:
            out[method] = named[1]
        else:
            out[method] = find_matching_run(store, method, base_model, dataset_hash, personas)
    return (spec if named is None else spec.replace(source_run=named[1])), out


def built_like(spec, parent_run_id: str | None):
    """``spec``, a stored run's job to run again, naming the run that one built on where it names none:
    a sweep around a merge varies the merge, not the adapters it merges."""
    if spec.source_run or not parent_run_id or not get_method(spec.method).sources(spec.method_params):
        return spec
    return spec.replace(source_run=parent_run_id)

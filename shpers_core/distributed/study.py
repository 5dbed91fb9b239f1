"""A study or sweep on Ray: the jobs that build on no other run go out together, then those that build on them.

The local study runs its rows one after another in one process; on a cluster that would leave all
but one GPU idle. Rows that reuse another run (merges reuse the per-persona run, prefixes and
retrieval the unified one) wait for the first wave, so they find it instead of training their own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shpers_core.distributed.ray_executor import connect, run_on_ray
from shpers_core.events import Reporter
from shpers_core.jobs.runner import load_dataset_for
from shpers_core.jobs.spec import build_spec
from shpers_core.jobs.study import (
    built_on_study_rows,
    get_preset,
    plan_study,
    preset_personas,
    row_line,
    study_passes,
)
from shpers_core.jobs.study_progress import FINISHED, NEW
from shpers_core.methods.registry import get_method


def waves(specs: list) -> list[list[int]]:
    """Indices of ``specs`` in the order they may run: first those that build on nothing, then the rest.

    When every job builds on another run (a sweep of merges), the first goes alone: it trains the
    run the others then find, instead of each training its own.
    """
    # ``requires``, not ``sources``: retrieval may build on unified LoRA, so it waits either way.
    first = [i for i, s in enumerate(specs) if not get_method(s.method).requires] or [0]
    return [w for w in (first, [i for i in range(len(specs)) if i not in first]) if w]


def run_study_on_ray(preset: str, workspace, reporter: Reporter, *, options, base_model: str | None = None,
                     personas: list[str] | None = None, dtype: str | None = None, device: str | None = None,
                     seeds: list[int] | None = None, resume: bool = False) -> list[str]:
    """Every study row as a Ray job, a wave at a time; returns run ids in the study's row order.

    With several ``seeds``, one pass of the study after another: a pass's merges and prefixes
    build on the pass's own runs (see :func:`~shpers_core.jobs.study.built_on_study_rows`). ``resume`` keeps finished
    rows and continues stopped ones, as :func:`~shpers_core.jobs.study.run_study` does."""
    p = get_preset(preset)
    dataset = load_dataset_for(build_spec("base_model", base_model=base_model or p.base_model), workspace)
    ids = personas or preset_personas(p, dataset.persona_ids)
    run_ids: list[str] = []
    for specs in study_passes(p, ids, base_model=base_model, dtype=dtype, device=device, seeds=seeds):
        rows = plan_study(specs, workspace, dataset.content_hash(), reporter, resume=resume)
        for row in rows:
            if row.state != NEW:
                reporter.log(row_line(row))
        todo = [i for i, row in enumerate(rows) if row.state != FINISHED]
        built = {row.spec.method: row.run_id for row in rows if row.state == FINISHED}
        ran = iter(run_specs_on_ray([rows[i].spec for i in todo], workspace, reporter, options=options,
                                    dataset=dataset, run_ids=[rows[i].run_id for i in todo], built=built))
        run_ids += [row.run_id if row.state == FINISHED else next(ran) for row in rows]
    return run_ids


def run_specs_on_ray(specs: list, workspace, reporter: Reporter, *, options, dataset=None,
                     label: str = "study", run_ids: list[str | None] | None = None,
                     built: dict[str, str] | None = None) -> list[str]:
    """Every spec as a Ray job, a wave at a time (see :func:`waves`); run ids in the order of ``specs``.
    ``run_ids[i]``, where given, is a stopped run that spec ``i`` continues. With ``built`` (a study pass's
    runs so far, by method), a merge or prefix builds on the pass's own run, which a wave before it made.

    A failure stops the jobs still running (each at a checkpoint) and is raised once they have stopped.
    """
    if not specs:
        return []
    if dataset is None:
        dataset = load_dataset_for(specs[0], workspace)
    connect(options.address)
    resumed = list(run_ids) if run_ids is not None else [None] * len(specs)
    run_ids = [None] * len(specs)
    done = 0
    for wave in waves(specs):
        if built is not None:
            specs = [built_on_study_rows(spec, built) if i in wave else spec for i, spec in enumerate(specs)]
        reporter.log(f"starting {len(wave)} jobs on Ray: {', '.join(specs[i].name for i in wave)}")
        with ThreadPoolExecutor(max_workers=max(1, len(wave))) as pool:
            futures = {i: pool.submit(run_on_ray, specs[i], workspace, reporter, options=options, dataset=dataset,
                                      run_id=resumed[i])
                       for i in wave}
            failure = None
            for i, future in futures.items():
                try:
                    run_ids[i] = future.result()
                    if built is not None:
                        built[specs[i].method] = run_ids[i]
                except BaseException as exc:  # noqa: BLE001 - the others stop at a checkpoint; the first error is raised
                    if failure is None:
                        reporter.request_stop()
                    failure = failure or exc
                done += 1
                reporter.progress(label, done, len(specs))
            if failure is not None:
                raise failure
    return [rid for rid in run_ids if rid is not None]

"""The whole study as a list of jobs, at three sizes.

``smoke`` proves the pipeline end to end on a CPU in minutes; ``quick`` answers the study's questions
on 20 personas in about 40 minutes on a 2-core CPU;
``seed`` is the study's own protocol (Qwen2.5-0.5B-Instruct, all personas, Appendix A) for a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shpers_core.data import Dataset
from shpers_core.errors import UserError
from shpers_core.events import Reporter
from shpers_core.jobs.runner import load_dataset_for, run_job
from shpers_core.jobs.spec import (
    TRAINING_SEED,
    JobSpec,
    applicable,
    build_spec,
    check_seeds,
    default_params,
    parameter_groups,
)
from shpers_core.jobs.study_progress import FINISHED, NEW, RESUME, StudyRow, describe_progress, study_progress
from shpers_core.methods.registry import get_method
from shpers_core.models import DEFAULT_MODEL
from shpers_core.store import RunStore

# (row label, method, method overrides). Dependencies come first: merges reuse the per-persona
# run, prefixes the unified one.
STUDY_STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("Base model (no adaptation)", "base_model", {}),
    ("Unified LoRA", "unified_lora", {}),
    ("Per-persona LoRA", "per_persona_lora", {}),
    ("Cluster LoRA (description)", "cluster_lora", {"features": "description"}),
    ("Cluster LoRA (behaviour)", "cluster_lora", {"features": "behaviour"}),
    ("Sparse MoE (factor average)", "sparse_moe", {"merge_mode": "factor_average"}),
    ("Sparse MoE (exact)", "sparse_moe", {"merge_mode": "exact"}),
    ("Weighted merge (factor average)", "weighted_merge", {"merge_mode": "factor_average"}),
    ("Weighted merge (exact)", "weighted_merge", {"merge_mode": "exact"}),
    ("Weighted merge (TIES)", "weighted_merge", {"merge_mode": "ties"}),
    ("Weighted merge (DARE)", "weighted_merge", {"merge_mode": "dare_linear"}),
    ("Unified + static text prefix", "static_prefix", {}),
    ("Unified + learned persona prefix", "soft_prompt", {"scope": "persona"}),
    ("Unified + learned cluster prefix", "soft_prompt", {"scope": "cluster"}),
    ("Unified + learned persona prefix (KV)", "soft_prompt", {"scope": "persona", "kind": "prefix"}),
    ("Unified + learned persona prefix (KV, random init)", "soft_prompt",
     {"scope": "persona", "kind": "prefix", "prefix_init": "random"}),
    ("Persona in system prompt", "system_prompt", {}),
    ("Retrieval of past turns", "retrieval", {}),
]


@dataclass(frozen=True)
class StudyPreset:
    name: str
    description: str
    base_model: str
    personas: int
    """How many personas (the first N by id); 0 for all."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """``group.field`` overrides applied to every method that has the field."""
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Further overrides for one method (by name), applied after ``overrides``."""
    note_cuts: bool = False
    """Name each trained row after what it cut from Appendix A, e.g. "Cluster LoRA (2 of 5 epochs, 8 training
    dialogues a persona)"."""


PRESETS: dict[str, StudyPreset] = {
    "smoke": StudyPreset(
        "smoke", "4 personas, one short epoch, 1 test dialogue each: the pipeline end to end in minutes on a CPU.",
        DEFAULT_MODEL, 4,
        # No warm-up: with two or three steps per adapter it would spend one at learning rate 0.
        {"train.num_epochs": 1, "train.warmup_ratio": 0.0, "eval.max_train_dialogues": 6,
         "eval.max_test_dialogues": 1, "eval.max_new_tokens": 24, "eval.eval_batch_size": 32,
         "train.max_length": 192, "k": 2, "experts": 2},
    ),
    "quick": StudyPreset(
        # Sized from rates measured on a 2-core AVX512-BF16 CPU in bf16: every row on 20 personas, 3 test
        # dialogues each, 8 training dialogues a persona (all 20 do not fit in 45 minutes). Unified and
        # per-persona LoRA keep Appendix A's 3 epochs: at 1 epoch the unified adapter scored 7 points lower
        # (53.4 against 60.7 %) and echoed requests back in chat instead of answering them. Cluster LoRA
        # runs 2 of 5 epochs and the learned prefixes 1 of 10 (4 rows of per-persona training at batch
        # size 2), and their names in the table say so.
        "quick", "20 personas, 8 training and 3 test dialogues each, every row, on the embedded model; "
                 "LoRA 3 epochs as in Appendix A, cluster LoRA 2 of 5 and learned prefixes 1 of 10 (the table "
                 "says so): about 40 minutes on a 2-core CPU.",
        DEFAULT_MODEL, 20,
        {"eval.max_train_dialogues": 8, "eval.max_test_dialogues": 3,
         "eval.max_new_tokens": 24, "eval.eval_batch_size": 64, "k": 4},
        method_overrides={"cluster_lora": {"train.num_epochs": 2}, "soft_prompt": {"train.num_epochs": 1}},
        note_cuts=True,
    ),
    "seed": StudyPreset(
        "seed", "The study's protocol: Qwen2.5-0.5B-Instruct, all 200 personas, Appendix A. For a GPU.",
        "qwen2.5-0.5b-instruct", 0, {},
    ),
}


def get_preset(name: str) -> StudyPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def seed_dependent(spec: JobSpec) -> bool:
    """Whether a study row changes with the training seed: it trains, or builds on a run that does."""
    method = get_method(spec.method)
    return method.trains or bool(method.sources(spec.method_params))


def study_passes(preset: str | StudyPreset, persona_ids: list[str], *, base_model: str | None = None,
                 extra: dict[str, Any] | None = None, dtype: str | None = None, device: str | None = None,
                 seeds: Sequence[int] | None = None) -> list[list[JobSpec]]:
    """The study's jobs, one list per training seed in ``seeds`` (one list, the preset's seed, when None).

    Passes run one after another: a pass's merges and prefixes build on its own runs (the runners name
    them as the rows run, :func:`built_on_study_rows`). With several seeds, a row that depends on the seed runs in every pass, named
    "ROW seed=N" (Table 5.1 pools such runs); a row that does not runs in the first pass only.
    """
    if seeds is None:
        return [_one_pass(preset, persona_ids, base_model=base_model, extra=extra, dtype=dtype, device=device)]
    seeds = check_seeds(seeds)
    passes = []
    for k, seed in enumerate(seeds):
        specs = _one_pass(preset, persona_ids, base_model=base_model, extra={**(extra or {}), TRAINING_SEED: seed},
                          dtype=dtype, device=device)
        if len(seeds) > 1:
            # A row that neither trains nor builds on a trained run replies the same whatever the seed.
            specs = [s.replace(name=f"{s.name} seed={seed}") if seed_dependent(s) else s
                     for s in specs if k == 0 or seed_dependent(s)]
        passes.append(specs)
    return passes


def study_specs(preset: str | StudyPreset, persona_ids: list[str], *, base_model: str | None = None,
                extra: dict[str, Any] | None = None, dtype: str | None = None, device: str | None = None,
                seeds: Sequence[int] | None = None) -> list[JobSpec]:
    """One job per study row for ``preset`` over ``persona_ids`` (already chosen), every pass of
    :func:`study_passes` in order."""
    return [spec for one in study_passes(preset, persona_ids, base_model=base_model, extra=extra, dtype=dtype,
                                         device=device, seeds=seeds) for spec in one]


def _one_pass(preset: str | StudyPreset, persona_ids: list[str], *, base_model: str | None,
              extra: dict[str, Any] | None, dtype: str | None, device: str | None) -> list[JobSpec]:
    p = get_preset(preset) if isinstance(preset, str) else preset
    specs = []
    for label, method, own in STUDY_STEPS:
        overrides = applicable(method, {**p.overrides, **p.method_overrides.get(method, {}), **(extra or {})})
        overrides.update({f"method_params.{k}": v for k, v in own.items()})
        spec = build_spec(method, overrides, base_model=base_model or p.base_model,
                          personas=list(persona_ids), name=label, dtype=dtype, device=device)
        if p.note_cuts and "train" in parameter_groups(method):
            full, used = default_params(method, "train").num_epochs, spec.train.num_epochs
            cuts = [f"{used} of {full} epochs"] if used < full else []
            if spec.eval.max_train_dialogues:
                cuts.append(f"{spec.eval.max_train_dialogues} training dialogues a persona")
            if cuts:
                spec = spec.replace(name=f"{label} ({', '.join(cuts)})")
        specs.append(spec)
    return specs


def preset_personas(preset: StudyPreset, all_ids: list[str]) -> list[str]:
    ids = sorted(all_ids)
    return ids[: preset.personas] if preset.personas else ids


def study_jobs(preset: str, workspace, *, base_model: str | None = None, personas: list[str] | None = None,
               dtype: str | None = None, device: str | None = None,
               seeds: Sequence[int] | None = None) -> tuple[Dataset, list[JobSpec]]:
    """The workspace's dataset and the study's jobs on it, as :func:`run_study` runs them."""
    p = get_preset(preset)
    dataset = load_dataset_for(build_spec("base_model", base_model=base_model or p.base_model), workspace)
    ids = personas or preset_personas(p, dataset.persona_ids)
    return dataset, study_specs(p, ids, base_model=base_model, dtype=dtype, device=device, seeds=seeds)


def run_study(preset: str, workspace, reporter: Reporter, *, base_model: str | None = None,
              personas: list[str] | None = None, dtype: str | None = None, device: str | None = None,
              seeds: Sequence[int] | None = None, resume: bool = False) -> list[str]:
    """Run every study row (once per seed in ``seeds``, see :func:`study_specs`) in one process; returns run ids.

    With ``resume``, a row that finished before in this workspace with the same settings on the same
    data is kept, and one that was interrupted or cancelled continues from its checkpoint (see
    :func:`~shpers_core.jobs.study_progress.study_progress`).
    """
    dataset, specs = study_jobs(preset, workspace, base_model=base_model, personas=personas, dtype=dtype,
                                device=device, seeds=seeds)
    rows = plan_study(specs, workspace, dataset.content_hash(), reporter, resume=resume)
    run_ids = []
    built: dict[str, str] = {}
    for i, row in enumerate(rows):
        reporter.check()  # stopped between rows: the next one does not start
        reporter.progress("study", i, len(rows))
        reporter.log(f"[{i + 1}/{len(rows)}] {row_line(row)}")
        if row.state == FINISHED:
            run_ids.append(row.run_id)
        else:
            run_ids.append(run_job(built_on_study_rows(row.spec, built), workspace, reporter, dataset=dataset,
                                   run_id=row.run_id))
        built[row.spec.method] = run_ids[-1]
    reporter.progress("study", len(rows), len(rows))
    return run_ids


def kept_rows_built_on(rows: list[StudyRow]) -> list[StudyRow]:
    """``rows`` whose merges and prefixes name the finished row of their pass they build on, where that row
    is kept (a continued study queued job by job, as the app does, where rows run in order and a row that
    runs again is the newest when they start)."""
    built: dict[str, str] = {}
    out = []
    for row in rows:
        if row.state != FINISHED:
            row = StudyRow(built_on_study_rows(row.spec, built), row.state, row.run_id)
        out.append(row)
        if row.state == FINISHED:
            built[row.spec.method] = row.run_id
        else:
            built.pop(row.spec.method, None)
    return out


def built_on_study_rows(spec: JobSpec, built: dict[str, str]) -> JobSpec:
    """``spec`` building on the study's own run of each method it needs (``built``: the latest row of each
    method so far), not on whichever such run finished last in the workspace (a sweep's, say)."""
    for method in get_method(spec.method).sources(spec.method_params):
        if method in built and not spec.source_run:
            return spec.replace(source_run=built[method])
    return spec


def plan_study(specs: list[JobSpec], workspace, dataset_hash: str, reporter: Reporter, *,
               resume: bool) -> list[StudyRow]:
    """What to do with each spec: everything NEW unless ``resume``; either way, say what was done before."""
    with RunStore(workspace.db_path) as store:
        if resume:
            rows = study_progress(store, specs, dataset_hash)
            before = describe_progress(rows)
        else:
            rows = [StudyRow(spec, NEW) for spec in specs]
            before = describe_progress(study_progress_quietly(store, specs, dataset_hash))
    if before:
        reporter.log(f"found in this workspace with the same settings and data: {before}; "
                     + ("finished rows are kept, stopped ones continue" if resume
                        else "every row runs again (--resume keeps them)"))
    return rows


def study_progress_quietly(store, specs: list[JobSpec], dataset_hash: str) -> list[StudyRow]:
    """:func:`study_progress`, where a row running elsewhere is no reason to stop (nothing is skipped)."""
    try:
        return study_progress(store, specs, dataset_hash)
    except UserError:
        return []


def row_line(row: StudyRow) -> str:
    """The log line of one study row: its name, and what was done before."""
    if row.state == FINISHED:
        return f"{row.spec.name}: finished before as run {row.run_id}, kept"
    if row.state == RESUME:
        return f"{row.spec.name}: continuing run {row.run_id} from its checkpoint"
    return row.spec.name

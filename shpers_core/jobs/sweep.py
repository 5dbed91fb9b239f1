"""A sweep: one method, one parameter, several values, one job per value (per training seed, with seeds).

The app's Launch tab and ``shpers sweep`` both build their jobs here, so a sweep queued in the window
and one typed on the command line give the same specs and the same run names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shpers_core.jobs.spec import (
    TRAINING_SEED,
    JobSpec,
    build_spec,
    check_seeds,
    parameter_groups,
    resolve_key,
)
from shpers_core.methods.registry import get_method
from shpers_core.params import ParamError, ParamSpec, coerce

SWEEPABLE = (int, float, str, bool)
"""Types a sweep can vary: one value per job (a list parameter would need a list per job)."""


def sweep_parameter(method: str, key: str) -> tuple[str, ParamSpec]:
    """``(qualified name, spec)`` of the swept parameter; ``key`` bare or ``group.name``."""
    groups = parameter_groups(method)
    try:
        group, name = resolve_key(method, key, groups)
    except ParamError:
        group, name = "", key
    found = [(group, s) for s in groups[group].specs() if s.name == name] if group in groups else []
    if not found:
        known = sorted(f"{g}.{s.name}" for g, cls in groups.items() for s in cls.specs() if s.type in SWEEPABLE)
        raise ParamError(f"{method}: cannot sweep {key!r}, not one of its parameters; known: {', '.join(known)}")
    group, spec = found[0]
    if spec.type not in SWEEPABLE:
        raise ParamError(f"{method}: {group}.{spec.name} is a {spec.type.__name__}; a sweep varies one "
                         f"{', '.join(t.__name__ for t in SWEEPABLE)} value per job")
    return f"{group}.{spec.name}", spec


def sweep_specs(method: str, key: str, values: list[Any], overrides: dict[str, Any] | None = None, *,
                name: str = "", seeds: Sequence[int] | None = None, **fields: Any) -> list[JobSpec]:
    """One validated spec per value of ``key``, named "NAME KEY=VALUE" (NAME: ``name`` or the method's).

    ``values`` may be typed or text as a user wrote it; ``overrides`` hold every other parameter. With
    ``seeds``, every value runs once per training seed, a pass over the values per seed (a sweep stopped
    part-way has whole curves), named "NAME KEY=VALUE seed=S"; the curve pools them. Raises
    :class:`ParamError` for an unknown parameter, a bad value, none or a repeated one, seeds for a method
    that trains nothing or for a sweep of the seed itself, and :class:`UserError` for bad seeds.
    """
    qualified, spec = sweep_parameter(method, key)
    if not values:
        raise ParamError("a sweep needs at least one value")
    typed = [coerce(spec, v) for v in values]
    repeated = sorted({str(v) for v in typed if typed.count(v) > 1})
    if repeated:
        raise ParamError(f"a sweep runs each value once; {qualified} repeats {', '.join(repeated)}")
    base = name or method
    rest = {k: v for k, v in (overrides or {}).items() if k not in (key, qualified)}
    if seeds is None:
        return [build_spec(method, {**rest, qualified: v}, name=f"{base} {spec.name}={v}", **fields) for v in typed]
    seeds = check_seeds(seeds)
    if qualified == TRAINING_SEED:
        raise ParamError(f"a sweep of {TRAINING_SEED} runs one seed per value already; leave the seeds out")
    if not get_method(method).trains:
        raise ParamError(f"{method} trains nothing: its replies are the same whatever the training seed; "
                         "leave the seeds out")
    return [build_spec(method, {**rest, qualified: v, TRAINING_SEED: seed},
                       name=f"{base} {spec.name}={v} seed={seed}", **fields)
            for seed in seeds for v in typed]

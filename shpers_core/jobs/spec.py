"""A job: a method, its parameters, a base model and a persona selection.

A :class:`JobSpec` is everything needed to re-run a run exactly; the store records it whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shpers_core.errors import UserError
from shpers_core.evaluation.config import EvalParams
from shpers_core.methods.registry import get_method
from shpers_core.params import ParamError, Params
from shpers_core.training.config import LoraParams, TrainParams


@dataclass
class JobSpec:
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    base_model: str = "smollm2-135m-instruct"
    personas: list[str] = field(default_factory=list)
    """Persona ids; empty means every persona of the dataset."""
    dataset_path: str = ""
    """Empty: the workspace's dataset."""
    name: str = ""
    device: str | None = None
    dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobSpec:
        return cls(**values)


def parameter_groups(method: str) -> dict[str, type[Params]]:
    """The parameter dataclasses of ``method``: its own, then LoRA, training and evaluation."""
    spec = get_method(method)
    groups: dict[str, type[Params]] = {"method_params": spec.params}
    if spec.shows_lora_form:
        groups["lora"] = LoraParams
    if spec.trains:
        groups["train"] = TrainParams
    groups["eval"] = EvalParams
    return groups


def defaults_for(method: str) -> dict[str, dict[str, Any]]:
    """Default values of every group for ``method`` (the method's Appendix-A deviations applied)."""
    spec = get_method(method)
    out = {}
    for group, cls in parameter_groups(method).items():
        values = {s.name: s.default for s in cls.specs()}
        if group == "train":
            values.update(spec.train_defaults)
        out[group] = values
    return out


def build_spec(method: str, overrides: dict[str, Any] | None = None, **fields: Any) -> JobSpec:
    """A validated :class:`JobSpec` from flat ``key=value`` overrides.

    A key may be bare (``learning_rate``) when only one group has it, or qualified
    (``train.learning_rate``). Unknown keys and out-of-range values raise :class:`ParamError`.
    """
    groups = parameter_groups(method)
    values = defaults_for(method)
    for key, raw in (overrides or {}).items():
        if "." in key:
            group, name = key.split(".", 1)
            group = {"method": "method_params", "params": "method_params"}.get(group, group)
            if group not in groups:
                raise ParamError(f"{method}: unknown parameter group {key.split('.')[0]!r}")
        else:
            owners = [g for g, cls in groups.items() if any(s.name == key for s in cls.specs())]
            if not owners:
                known = sorted(s.name for cls in groups.values() for s in cls.specs())
                raise ParamError(f"{method}: unknown parameter {key!r}; known: {', '.join(known)}")
            group, name = owners[0], key
        values[group][name] = groups[group].parse_value(name, raw)
    for group, cls in groups.items():
        cls.from_dict(values[group])  # validates ranges; raises ParamError naming the field
    name = fields.get("name") or ""
    if any(not ch.isprintable() for ch in name):
        # A newline in a name could fake a row in `runs list` or a CSV export.
        raise ParamError(f"run name {name!r} contains a newline or another control character")
    return JobSpec(method=method, **values, **fields)


def resolved(spec: JobSpec) -> tuple[Params, LoraParams, TrainParams, EvalParams]:
    """The typed parameter objects of a spec (validated)."""
    method = get_method(spec.method)
    defaults = defaults_for(spec.method)
    try:
        mp = method.params.from_dict({**defaults["method_params"], **spec.method_params})
        lora = LoraParams.from_dict({**defaults.get("lora", {}), **spec.lora})
        train = TrainParams.from_dict({**defaults.get("train", {}), **spec.train})
        ev = EvalParams.from_dict({**defaults["eval"], **spec.eval})
    except TypeError as exc:
        raise UserError(f"{spec.method}: {exc}") from None
    return mp, lora, train, ev


def source_spec(spec: JobSpec, method: str, personas: list[str], *, lora: LoraParams, eval: EvalParams) -> JobSpec:
    """The job of a source run that ``spec`` builds on: ``method`` with this run's LoRA and evaluation settings."""
    return build_spec(method, {**{f"eval.{k}": v for k, v in eval.to_dict().items()},
                               **{f"lora.{k}": v for k, v in lora.to_dict().items()}},
                      base_model=spec.base_model, personas=list(personas), dataset_path=spec.dataset_path,
                      device=spec.device, dtype=spec.dtype)

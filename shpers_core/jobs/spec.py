"""A job: a method, its typed parameters, a base model and a persona selection.

A :class:`JobSpec` is everything needed to re-run a run exactly. Its parameter groups are the
typed :class:`~shpers_core.params.Params` objects themselves, validated when they are built.
Dicts appear only at the edges, each in one place here:

- ``"group.name"`` overrides (the CLI's ``--param``, study presets, the app's forms) go through
  :func:`build_spec` / :meth:`JobSpec.with_overrides`;
- the run store and the child processes get :meth:`JobSpec.to_dict` and give back
  :meth:`JobSpec.from_dict` (the stored shape is unchanged: a method without LoRA settings of its
  own stores ``"lora": {}``, one that does not train ``"train": {}``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from shpers_core.errors import UserError
from shpers_core.evaluation.config import EvalParams
from shpers_core.methods.registry import get_method
from shpers_core.models import DEFAULT_MODEL
from shpers_core.params import GROUP_ALIASES, ParamError, Params
from shpers_core.training.config import LoraParams, TrainParams

GROUPS: dict[str, type[Params] | None] = {
    "method_params": None, "lora": LoraParams, "train": TrainParams, "eval": EvalParams}
"""Every parameter group, in the order forms and ``--help`` show them (None: the method's own class)."""

TRAINING_SEED = "train.seed"
"""The parameter a study's and a sweep's seeds set: the training seed (the split's stays, so every run tests alike)."""
DEVICES = ("cuda", "mps", "cpu")
DEVICE_HELP = "where the job computes: cuda (or cuda:N), mps or cpu (default: the best available)"
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_HELP = ("the frozen base model's dtype (default: bfloat16 on a GPU that has it and on a CPU whose bf16 products "
              "beat float32's, float16 with loss scaling on a GPU without bf16, else float32; trained weights, their "
              "gradients and optimiser state are float32 either way; the run records the one it used)")


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list, or a :class:`UserError` if there are none or one is negative or repeated."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise UserError("give at least one training seed")
    if any(s < 0 for s in seeds):
        raise UserError(f"training seeds are whole numbers from 0; got {', '.join(map(str, seeds))}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"each training seed runs once; {', '.join(map(str, repeated))} repeats")
    return seeds


def parameter_groups(method: str) -> dict[str, type[Params]]:
    """The parameter dataclasses ``method`` shows: its own, then LoRA, training and evaluation."""
    spec = get_method(method)
    groups: dict[str, type[Params]] = {"method_params": spec.params}
    if spec.shows_lora_form:
        groups["lora"] = LoraParams
    if spec.trains:
        groups["train"] = TrainParams
    groups["eval"] = EvalParams
    return groups


def default_params(method: str, group: str) -> Params:
    """The defaults of one group for ``method`` (its Appendix-A training deviations applied)."""
    spec = get_method(method)
    cls = GROUPS[group] or spec.params
    return cls(**(spec.train_defaults if group == "train" else {}))


def defaults_for(method: str) -> dict[str, dict[str, Any]]:
    """Default values of every group ``method`` shows, as plain values (for forms and listings)."""
    return {group: default_params(method, group).to_dict() for group in parameter_groups(method)}


def flat_defaults(method: str) -> dict[str, Any]:
    """Every parameter's default for ``method`` as ``{"group.name": value}``; empty for a method this
    build lacks (a stored run of a removed method still reads)."""
    try:
        return {f"{group}.{name}": value for group, values in defaults_for(method).items()
                for name, value in values.items()}
    except UserError:
        return {}


@dataclass(frozen=True)
class JobSpec:
    method: str
    method_params: Params
    lora: LoraParams
    """The method's LoRA settings; the defaults where it shows none (merges save with them)."""
    train: TrainParams
    eval: EvalParams
    base_model: str = DEFAULT_MODEL
    personas: list[str] = field(default_factory=list)
    """Persona ids; empty means every persona of the dataset."""
    dataset_path: str = ""
    """Empty: the workspace's dataset."""
    name: str = ""
    device: str | None = None
    """See :data:`DEVICE_HELP`."""
    dtype: str | None = None
    """See :data:`DTYPE_HELP`."""
    source_run: str = ""
    """The run a merge or prefix builds on (see ``MethodSpec.requires``); empty: the newest finished run
    of that method on the same base model, data and personas, or one trained first."""

    @classmethod
    def for_method(cls, method: str, **fields: Any) -> JobSpec:
        """``method`` with every parameter at its default."""
        return cls(method=method, **{g: default_params(method, g) for g in GROUPS}, **fields)

    def replace(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)

    def groups(self) -> dict[str, Params]:
        """The parameter groups the method shows, by group name."""
        return {group: getattr(self, group) for group in parameter_groups(self.method)}

    def with_overrides(self, overrides: dict[str, Any] | None) -> JobSpec:
        """This spec with ``"group.name"`` (or bare ``name``) overrides; values may be text to parse.

        A bare name must belong to one group only of those the method shows. Unknown names and
        out-of-range values raise :class:`ParamError` naming the field.
        """
        shown = parameter_groups(self.method)
        changes: dict[str, dict[str, Any]] = {}
        for key, raw in (overrides or {}).items():
            group, name = resolve_key(self.method, key, shown)
            changes.setdefault(group, {})[name] = shown[group].parse_value(name, raw)
        return self.replace(**{group: getattr(self, group).replace(**changes[group])
                               for group in shown if group in changes})

    def form_values(self) -> dict[str, Any]:
        """Every parameter the method shows as ``{"group.name": value}``: the shape forms and overrides take."""
        return {f"{group}.{name}": value for group, params in self.groups().items()
                for name, value in params.to_dict().items()}

    def to_dict(self) -> dict[str, Any]:
        """The store's and the child processes' shape (groups the method does not show are empty)."""
        shown = parameter_groups(self.method)
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for group in GROUPS:
            out[group] = out[group].to_dict() if group in shown else {}
        out["personas"] = list(self.personas)
        if not out["source_run"]:
            # Left out when unset, so records written before the field existed still compare equal.
            del out["source_run"]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobSpec:
        """A spec from :meth:`to_dict`'s shape; missing groups and fields take today's defaults."""
        values = dict(values)
        method = values.pop("method")
        if isinstance(values.get("train"), dict) and values["train"] and "group_by_length" not in values["train"]:
            # Recorded before batches were grouped by length: resuming must replay the same batches.
            # (An empty group is one the method does not show: it keeps today's defaults.)
            values["train"] = {**values["train"], "group_by_length": False}
        try:
            groups = {group: default_params(method, group).replace(**(values.pop(group, None) or {}))
                      for group in GROUPS}
            return cls(method=method, **groups, **values)
        except TypeError as exc:
            raise UserError(f"{method}: {exc}") from None


def spec_like(params: dict[str, Any], overrides: dict[str, Any] | None = None, **fields: Any) -> JobSpec:
    """A new job with a stored run's settings (``params``: its record's), then ``overrides`` ("group.name")
    and the job fields given (None, "" and [] keep the run's)."""
    spec = JobSpec.from_dict(params).with_overrides(overrides)
    return _checked(spec.replace(**{k: v for k, v in fields.items() if v not in (None, "", [])}))


def resolve_key(method: str, key: str, shown: dict[str, type[Params]] | None = None) -> tuple[str, str]:
    """The group and field a ``"group.name"`` or bare ``"name"`` override means for ``method``.

    The one parser of that format: the CLI, study presets, sweeps and the app's forms all use it.
    """
    shown = shown if shown is not None else parameter_groups(method)
    if "." in key:
        group, name = key.split(".", 1)
        group = GROUP_ALIASES.get(group, group)
        if group not in shown:
            raise ParamError(f"{method}: unknown parameter group {key.split('.')[0]!r}")
        return group, name
    owners = [g for g, cls in shown.items() if any(s.name == key for s in cls.specs())]
    if not owners:
        known = sorted(s.name for cls in shown.values() for s in cls.specs())
        raise ParamError(f"{method}: unknown parameter {key!r}; known: {', '.join(known)}")
    return owners[0], key


def applicable(method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that name a field ``method`` shows (a preset's shared settings skip the others)."""
    shown = parameter_groups(method)
    out = {}
    for key, value in overrides.items():
        try:
            group, name = resolve_key(method, key if "." in key else f"method_params.{key}", shown)
        except ParamError:
            continue
        if any(s.name == name for s in shown[group].specs()):
            out[f"{group}.{name}"] = value
    return out


def build_spec(method: str, overrides: dict[str, Any] | None = None, **fields: Any) -> JobSpec:
    """A validated :class:`JobSpec` from ``"group.name"`` overrides and the job's other fields.

    A key may be bare (``learning_rate``) when only one group has it, or qualified
    (``train.learning_rate``). Unknown keys and out-of-range values raise :class:`ParamError`.
    """
    return _checked(JobSpec.for_method(method, **fields).with_overrides(overrides))


def _checked(spec: JobSpec) -> JobSpec:
    if any(not ch.isprintable() for ch in spec.name):
        # A newline in a name could fake a row in `runs list` or a CSV export.
        raise ParamError(f"run name {spec.name!r} contains a newline or another control character")
    return spec


def source_spec(spec: JobSpec, method: str, personas: list[str]) -> JobSpec:
    """The job of a source run ``spec`` builds on: ``method`` with this job's LoRA and evaluation settings."""
    return JobSpec.for_method(method, base_model=spec.base_model, personas=list(personas),
                              dataset_path=spec.dataset_path, device=spec.device,
                              dtype=spec.dtype).replace(lora=spec.lora, eval=spec.eval)

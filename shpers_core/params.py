"""Typed parameter dataclasses: one source of truth for defaults, ranges and help text.

Every configurable thing in shpers (a method's knobs, training settings, LoRA settings) is a
dataclass whose fields are declared with :func:`param`. The CLI builds its ``--param`` parsing
and ``--help`` from them, the app builds its forms and tooltips from them, and the run store
records them with :meth:`Params.to_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shpers_core.errors import UserError

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)


GROUP_ALIASES = {"method": "method_params", "params": "method_params"}
"""Other names a ``group.name`` key may give the method's own group (``method.k`` for ``method_params.k``)."""


class ParamError(UserError, ValueError):
    """A parameter name or value a user gave is not acceptable."""


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    min_exclusive: bool = False,
) -> Any:
    """Declare a documented, range-checked dataclass field."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """What a form or a CLI needs to know about one parameter."""

    name: str
    type: type
    default: Any
    help: str
    min: float | None
    max: float | None
    choices: tuple[Any, ...] | None
    min_exclusive: bool


def _base_type(tp: Any) -> type:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin in (list, tuple):
        return list
    return tp if isinstance(tp, type) else str


@dataclass
class Params:
    """Base class of every parameter dataclass; validates in ``__post_init__``."""

    title: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def specs(cls) -> list[ParamSpec]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(
                ParamSpec(
                    name=f.name,
                    type=_base_type(hints[f.name]),
                    default=default,
                    help=f.metadata.get("help", ""),
                    min=f.metadata.get("min"),
                    max=f.metadata.get("max"),
                    choices=f.metadata.get("choices"),
                    min_exclusive=f.metadata.get("min_exclusive", False),
                )
            )
        return out

    def validate(self) -> None:
        """Raise :class:`ParamError` naming the first field whose value is out of range."""
        for spec in self.specs():
            value = checked(type(self), spec, getattr(self, spec.name))
            if value is not getattr(self, spec.name):
                setattr(self, spec.name, value)  # an int given for a float field, stored as float

    @classmethod
    def check_value(cls, name: str, value: Any) -> Any:
        """``value`` for field ``name`` as :meth:`validate` keeps it; :class:`ParamError` when it is not valid.

        Lets a form check one field as it is edited with the same rules as the whole object.
        """
        spec = {s.name: s for s in cls.specs()}.get(name)
        if spec is None:
            raise ParamError(f"{cls.title or cls.__name__}: unknown parameter {name!r}")
        return checked(cls, spec, value)

    def check_persona_count(self, method: str, count: int) -> None:
        """Raise :class:`UserError` when these settings cannot work on ``count`` selected personas.

        Nothing to check by default; settings that cluster personas override it.
        """

    def to_dict(self) -> dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in self.specs()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, strict: bool = True):
        """Build from a mapping; unknown keys are an error unless ``strict`` is false."""
        names = {s.name for s in cls.specs()}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ParamError(
                f"{cls.title or cls.__name__}: unknown parameter {unknown[0]!r}; known: {', '.join(sorted(names))}"
            )
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any):
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def parse_value(cls, name: str, text: str) -> Any:
        """Turn the text a user typed for ``name`` into a value of the field's type."""
        spec = {s.name: s for s in cls.specs()}.get(name)
        if spec is None:
            raise ParamError(
                f"{cls.title or cls.__name__}: unknown parameter {name!r}; "
                f"known: {', '.join(s.name for s in cls.specs())}"
            )
        return coerce(spec, text)


def checked(cls: type[Params], spec: ParamSpec, value: Any) -> Any:
    """``value`` of field ``spec`` of ``cls`` (an int made float for a float field), or :class:`ParamError`."""
    where = cls.title or cls.__name__
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type in (int, float) and not isinstance(value, (int, float)) or (
        spec.type is int and isinstance(value, float)
    ):
        raise ParamError(f"{where}: {spec.name} must be {spec.type.__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(f"{where}: {spec.name}={value!r} must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        # The run store keeps integers as SQLite INTEGER (64-bit).
        raise ParamError(f"{where}: {spec.name}={value!r} is too large (at most {INT_MAX})")
    if spec.type is list and not value and spec.default:
        raise ParamError(f"{where}: {spec.name} is empty; give at least one value")
    if spec.choices is not None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in spec.choices]
        if bad:
            raise ParamError(f"{where}: {spec.name}={bad[0]!r} is not one of {', '.join(map(str, spec.choices))}")
    if spec.min is not None and isinstance(value, (int, float)):
        if value < spec.min or (spec.min_exclusive and value == spec.min):
            op = ">" if spec.min_exclusive else ">="
            raise ParamError(f"{where}: {spec.name}={value!r} must be {op} {spec.min}")
    if spec.max is not None and isinstance(value, (int, float)) and value > spec.max:
        raise ParamError(f"{where}: {spec.name}={value!r} must be <= {spec.max}")
    return value


def coerce(spec: ParamSpec, text: Any) -> Any:
    """Convert ``text`` (a string from a CLI or a form) to the type of ``spec``."""
    if not isinstance(text, str):
        return text
    if not text.strip() and spec.type is not str:
        raise ParamError(f"{spec.name}: empty value; give a {spec.type.__name__}")
    try:
        if spec.type is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if spec.type is int:
            return int(text)
        if spec.type is float:
            return float(text)
        if spec.type is list:
            return [t.strip() for t in text.split(",") if t.strip()]
    except ValueError:
        raise ParamError(f"{spec.name}: {text!r} is not a valid {spec.type.__name__}") from None
    return text


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Split ``["key=value", ...]`` as given to ``--param``."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"--param {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out

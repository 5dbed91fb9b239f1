"""Every method by name. Adding a method: one module with a ``METHOD`` and one line here."""

from __future__ import annotations

import importlib

from shpers_core.errors import UserError
from shpers_core.methods.base import MethodSpec

_MODULES = [
    "base_model",
    "system_prompt",
    "retrieval",
    "unified_lora",
    "per_persona_lora",
    "cluster_lora",
    "sparse_moe",
    "weighted_merge",
    "static_prefix",
    "soft_prompt",
]

METHODS: dict[str, MethodSpec] = {}
for _name in _MODULES:
    _spec = importlib.import_module(f"shpers_core.methods.{_name}").METHOD
    METHODS[_spec.name] = _spec


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None

"""What a method is: a parameter dataclass, a run function, and how the table names it.

A method's ``run(ctx, params)`` trains or builds whatever it needs through the shared
:class:`~shpers_core.methods.context.MethodContext` and returns an
:class:`~shpers_core.evaluation.plan.EvalPlan` that says how to answer each persona: which LoRA
adapter, which system prompt, which soft prompt. The shared evaluator does the rest, so a new
method is one module and one line in ``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shpers_core.params import Params

if TYPE_CHECKING:
    from shpers_core.evaluation.plan import EvalPlan
    from shpers_core.methods.context import MethodContext


@dataclass
class NoParams(Params):
    """For methods with nothing to set beyond training and LoRA."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    summary: str
    params: type[Params]
    run: Callable[[MethodContext, Any], EvalPlan]
    trains: bool = True
    """Whether the method trains with the shared training settings (the ``train`` group)."""
    shows_lora_form: bool = True
    """Whether the method takes LoRA settings of its own (the ``lora`` group). Merges and prefixes
    reuse adapters another run trained, so they have none to show."""
    train_defaults: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """Methods whose finished runs this one builds on: the runner finds one in the store, or trains
    it first, before ``run`` is called; ``ctx.source_run(name)`` then gives its id."""
    requires_when: Callable[[Any], bool] | None = None
    """When set, ``requires`` applies only to parameters for which this is true (retrieval on the
    unified adapter)."""

    def sources(self, params: Params) -> tuple[str, ...]:
        """The methods whose runs a job with ``params`` builds on."""
        if self.requires_when is not None and not self.requires_when(params):
            return ()
        return self.requires

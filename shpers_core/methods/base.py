"""What a method is: a parameter dataclass, a run function, and how the table names it.

A method's ``run(ctx, params)`` trains or builds whatever it needs through the shared
:class:`~shpers_core.jobs.context.MethodContext` and returns an :class:`EvalPlan` that says how
to answer each persona: which LoRA adapter, which system prompt, which soft prompt. The shared
evaluator does the rest, so a new method is one module and one line in ``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from shpers_core.params import Params

if TYPE_CHECKING:
    from shpers_core.data.schema import Message
    from shpers_core.jobs.context import MethodContext


@dataclass
class NoParams(Params):
    """For methods with nothing to set beyond training and LoRA."""


@dataclass
class Adapter:
    """A LoRA adapter in PEFT's state-dict naming, with the scale its update is applied at."""

    state_dict: dict[str, torch.Tensor]
    scaling: float
    path: str = ""


@dataclass
class EvalPlan:
    """How to answer each persona's test turns.

    ``adapters`` maps persona id to its LoRA adapter (None: the base model alone). Several
    personas may share one adapter object (unified, cluster); the evaluator loads it once.
    ``system`` maps persona id to a system prompt; ``system_for_turn`` may compute one per turn
    (retrieval). ``soft_prompts`` maps persona id to learned input embeddings [n_virtual, hidden];
    ``kv_prefixes`` to learned keys and values that every layer attends to before the prompt
    (prefix tuning), [num_layers, 2, num_kv_heads, n_virtual, head_dim].
    """

    adapters: dict[str, Adapter | None] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    system_for_turn: Callable[[str, list[Message]], str | None] | None = None
    soft_prompts: dict[str, torch.Tensor] = field(default_factory=dict)
    soft_prompt_paths: dict[str, str] = field(default_factory=dict)
    kv_prefixes: dict[str, torch.Tensor] = field(default_factory=dict)
    kv_prefix_paths: dict[str, str] = field(default_factory=dict)
    retrieval_examples: int = 0
    """When > 0, ``system_for_turn`` retrieves this many past exchanges (rebuilt for chat)."""

    def recipe(self, persona_id: str) -> dict[str, Any]:
        """What answering ``persona_id`` takes, as JSON: lets the chat pane rebuild it later."""
        adapter = self.adapters.get(persona_id)
        return {
            "adapter": adapter.path if adapter is not None else None,
            "system": self.system.get(persona_id),
            "soft_prompt": self.soft_prompt_paths.get(persona_id),
            "kv_prefix": self.kv_prefix_paths.get(persona_id),
            "retrieval_examples": self.retrieval_examples,
        }


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    summary: str
    params: type[Params]
    run: Callable[[MethodContext, Any], EvalPlan]
    trains: bool = True
    uses_lora: bool = True
    train_defaults: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """Methods whose finished runs this one builds on (found in the store, or trained first)."""

"""What a method hands the evaluator: how to answer each persona (adapter, system prompt, prefix)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from shpers_core.training.adapter_types import Adapter

if TYPE_CHECKING:
    from shpers_core.data.schema import Message


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

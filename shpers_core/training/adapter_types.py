"""A LoRA adapter in memory: what training produces and what evaluation and chat load.

It lives below ``methods/`` and ``jobs/`` so that ``training/`` and ``evaluation/`` can name it
without importing the layers that use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Adapter:
    """A LoRA adapter in PEFT's state-dict naming, with the scale its update is applied at."""

    state_dict: dict[str, torch.Tensor]
    scaling: float
    path: str = ""

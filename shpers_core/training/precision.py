"""Dynamic loss scaling for a float16 base model (CUDA without bf16).

The trained weights, their gradients and optimiser state stay float32 whatever the base dtype;
only float16 activations can underflow in the backward pass, so the loss is multiplied by a
scale before it, the gradients divided by it after, and a step whose gradients overflowed is
skipped while the scale halves (``torch.amp.GradScaler``'s rule, which needs a torch optimiser;
the batched trainer's is its own). bf16 and float32 have float32's range and need none.
"""

from __future__ import annotations

import torch


class LossScaler:
    def __init__(self, enabled: bool, init_scale: float = 2.0**16, growth_interval: int = 2000):
        self.enabled = enabled
        self.scale = init_scale if enabled else 1.0
        self.growth_interval = growth_interval
        self._good_steps = 0

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> LossScaler:
        """Enabled when the model's weights are float16."""
        dtype = next(model.parameters()).dtype
        return cls(dtype == torch.float16)

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    @torch.no_grad()
    def unscale(self, params: list[torch.Tensor]) -> bool:
        """Divide the gradients by the scale; False (and the scale halved) when any is not finite."""
        if not self.enabled:
            return True
        grads = [p.grad for p in params if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self.scale /= 2.0
            self._good_steps = 0
            return False
        for g in grads:
            g.div_(self.scale)
        self._good_steps += 1
        if self._good_steps >= self.growth_interval:
            self.scale *= 2.0
            self._good_steps = 0
        return True

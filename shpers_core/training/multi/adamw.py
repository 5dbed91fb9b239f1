"""AdamW and gradient clipping over stacked adapters: one independent optimiser per row of dim 0.

The update is ``torch.optim.AdamW``'s (single-tensor form), with a step count and learning rate
per adapter. Adapters not in ``active`` are left exactly as they are: no weight decay, no moment
decay, no step counted, as if their own optimiser had not been called.
"""

from __future__ import annotations

import torch


class StackedAdamW:
    def __init__(self, params: list[torch.Tensor], n_adapters: int, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        self.params = params
        self.n = n_adapters
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(n_adapters, dtype=torch.float64)

    @torch.no_grad()
    def step(self, active: torch.Tensor, lr: torch.Tensor) -> None:
        """One AdamW step for the adapters where ``active`` (bool [N]) is set, at their own ``lr`` ([N])."""
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            return
        everyone = idx.numel() == self.n
        self.steps[idx] += 1
        # Per-adapter scalars in float64, as torch computes them from Python floats.
        steps = self.steps[idx]
        lr64 = lr.to(torch.float64)[idx]
        decay = 1 - lr64 * self.weight_decay
        step_size = lr64 / (1 - self.beta1**steps)
        bc2_sqrt = (1 - self.beta2**steps).sqrt()
        dev_idx = None if everyone else idx.to(self.params[0].device)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            cast = dict(device=p.device, dtype=p.dtype)
            if everyone:
                pw, g, mw, vw = p.data, p.grad, m, v
            else:
                pw, g = p.data.index_select(0, dev_idx), p.grad.index_select(0, dev_idx)
                mw, vw = m.index_select(0, dev_idx), v.index_select(0, dev_idx)
            pw.mul_(decay.to(**cast).view(shape))
            mw.lerp_(g, 1 - self.beta1)
            vw.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (vw.sqrt() / bc2_sqrt.to(**cast).view(shape)).add_(self.eps)
            pw.sub_(mw / denom * step_size.to(**cast).view(shape))
            if not everyone:
                p.data.index_copy_(0, dev_idx, pw)
                m.index_copy_(0, dev_idx, mw)
                v.index_copy_(0, dev_idx, vw)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """Moments and per-adapter step counts, on the CPU (for ``torch.save``; tensors and lists only)."""
        return {
            "steps": self.steps.clone(),
            "exp_avg": [m.detach().cpu().clone() for m in self.exp_avg],
            "exp_avg_sq": [v.detach().cpu().clone() for v in self.exp_avg_sq],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into this optimiser's tensors (on their own device and dtype)."""
        steps = state["steps"]
        if tuple(steps.shape) != (self.n,):
            raise ValueError(f"optimiser state is for {steps.numel()} adapters, not {self.n}")
        for key, mine in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            saved = state[key]
            if len(saved) != len(mine) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(saved, mine)):
                raise ValueError(f"optimiser state {key!r} does not fit these parameters")
            for dest, src in zip(mine, saved):
                dest.copy_(src)
        self.steps.copy_(steps)


@torch.no_grad()
def clip_grad_norm_per_adapter(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each adapter's gradient (its rows across all ``params``) like ``clip_grad_norm_``; returns norms [N]."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.flatten(1).float().pow(2).sum(1) for g in grads]).sum(0)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype).view((-1,) + (1,) * (g.dim() - 1)))
    return norms

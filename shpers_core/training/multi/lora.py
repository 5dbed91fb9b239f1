"""Many LoRA adapters on one frozen base model, each batch row routed to its own adapter.

Each target ``nn.Linear`` is replaced by a :class:`StackedLoraLinear` holding ``A [N, r, in]`` and
``B [N, out, r]``. Rows pick their adapter through a shared :class:`SlotRouter`, which stays set
across the forward calls of a generation loop. The arithmetic is PEFT's:
``y = base(x) + B(A(dropout(x))) * alpha / r``; adapters go in and out in PEFT's key naming.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig
from torch import nn

from shpers_core.training.adapters import write_peft_folder
from shpers_core.training.config import LoraParams
from shpers_core.training.dropout import lora_dropout

NO_ADAPTER = -1
# Decoding with mixed adapters multiplies each token by every adapter's A (N * r columns); past
# this many columns, gathering each row's own A and B is cheaper.
ALL_RANKS_MAX = 1024
PEFT_PREFIX = "base_model.model."
# PEFT's raw module state has ``lora_A.<adapter>.weight``; its saved files drop the adapter name.
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


class SlotRouter:
    """The adapter slot of every batch row, shared by all stacked layers of one model."""

    def __init__(self) -> None:
        self.mode = "base"  # "base": no adapter; "single": one slot for all rows; "mixed"
        self.slot = NO_ADAPTER
        self.index: torch.Tensor | None = None  # [rows] slot per row, -1 clamped to 0
        self.keep: torch.Tensor | None = None  # [rows, 1, 1] 0 where a row has no adapter, else None
        self._blocks: tuple[tuple, torch.Tensor] | None = None  # row_blocks' last answer, per routing

    def set(self, slots: Sequence[int] | torch.Tensor | int | None, n_adapters: int, device: torch.device) -> None:
        self._blocks = None
        if slots is None:
            self.mode, self.index, self.keep = "base", None, None
            return
        if isinstance(slots, int):
            slots = [slots]
        t = torch.as_tensor(slots, dtype=torch.long).flatten()
        if t.numel() and (int(t.max()) >= n_adapters or int(t.min()) < NO_ADAPTER):
            raise ValueError(f"adapter slots must lie in [-1, {n_adapters - 1}], got {t.tolist()}")
        first = int(t[0]) if t.numel() else NO_ADAPTER
        if bool((t == first).all()):
            # One adapter for every row: plain matmuls, the same arithmetic as a lone PEFT model.
            self.mode, self.slot, self.index, self.keep = ("base" if first == NO_ADAPTER else "single"), first, None, None
            return
        self.mode = "mixed"
        self.index = t.clamp(min=0).to(device)
        none = t == NO_ADAPTER
        self.keep = (~none).to(device).view(-1, 1, 1) if bool(none.any()) else None

    def saved(self) -> tuple:
        return self.mode, self.slot, self.index, self.keep, self._blocks

    def restore(self, saved: tuple) -> None:
        self.mode, self.slot, self.index, self.keep, self._blocks = saved

    def row_blocks(self, n_adapters: int, rank: int, dtype: torch.dtype) -> torch.Tensor:
        """[rows, N*r]: 1 over the r columns of each row's own adapter, 0 elsewhere (all 0 without one)."""
        key = (n_adapters, rank, dtype)
        if self._blocks is None or self._blocks[0] != key:
            onehot = F.one_hot(self.index, n_adapters).to(dtype)
            if self.keep is not None:
                onehot = onehot * self.keep.view(-1, 1).to(dtype)
            self._blocks = (key, onehot.repeat_interleave(rank, dim=1))
        return self._blocks[1]


class StackedLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus ``N`` LoRA adapters; ``forward`` applies each row's own one."""

    def __init__(self, base_layer: nn.Linear, n_adapters: int, rank: int, scaling: float, dropout: float,
                 router: SlotRouter):
        super().__init__()
        self.base_layer = base_layer
        w = base_layer.weight
        # Like PEFT's autocast_adapter_dtype: half-precision bases keep their adapters in fp32.
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        self.lora_A = nn.Parameter(torch.zeros(n_adapters, rank, base_layer.in_features, device=w.device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(n_adapters, base_layer.out_features, rank, device=w.device, dtype=dtype))
        self.scaling = scaling
        self.dropout = dropout
        self.router = router
        self._b_all_key: tuple[int, int] | None = None
        self._b_all_cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        r = self.router
        if r.mode == "base":
            return result
        xa = x.to(self.lora_A.dtype)
        if self.dropout > 0:
            xa = lora_dropout(xa, self.dropout, self.training)
        if r.mode == "single":
            # Scaled at rank r, a tensor out/r times smaller than the output (PEFT scales the output);
            # the same numbers where the scaling is a power of two, as Appendix A's 16 / 8 is.
            delta = F.linear(F.linear(xa, self.lora_A[r.slot]) * self.scaling, self.lora_B[r.slot])
        elif xa.dim() == 3 and xa.shape[1] == 1 and not torch.is_grad_enabled() and self._all_ranks() <= ALL_RANKS_MAX:
            delta = self._decode_delta(xa, r)
        else:
            rows = r.index.numel()
            shape = xa.shape
            xa = xa.reshape(rows, -1, shape[-1])
            h = torch.bmm(xa, self.lora_A.index_select(0, r.index).transpose(1, 2)) * self.scaling
            if r.keep is not None:
                h = h * r.keep
            delta = torch.bmm(h, self.lora_B.index_select(0, r.index).transpose(1, 2))
            delta = delta.reshape(*shape[:-1], delta.shape[-1])
        if delta.dtype == result.dtype:
            # In place: the base layer's backward needs its input and weight, not its output.
            return result.add_(delta)
        # Added in the adapter's float32, then rounded once to the base dtype, as PEFT does.
        return (result + delta).to(result.dtype)


    def _all_ranks(self) -> int:
        """Columns of all adapters' A together (N * r)."""
        return self.lora_A.shape[0] * self.lora_A.shape[1]

    def _decode_delta(self, xa: torch.Tensor, r: SlotRouter) -> torch.Tensor:
        """Mixed rows of one new token each, through every adapter's A at once: ``x @ [A_0; ...; A_N-1]``,
        then each row's own block kept (the rest zeroed) and multiplied by ``[B_0 ... B_N-1]``.

        Gathering each row's A and B, as the general path does, copies ``rows * (in + out) * r``
        weights per layer and token; here each adapter's weights are read once, in two matrix products.
        """
        n, rank, _ = self.lora_A.shape
        b_all = self._b_all()
        h = F.linear(xa, self.lora_A.reshape(n * rank, -1))  # [rows, 1, N*r]
        h = h * r.row_blocks(n, rank, h.dtype).unsqueeze(1)
        return F.linear(h.mul_(self.scaling), b_all)

    def _b_all(self) -> torch.Tensor:
        """``[B_0 ... B_N-1]`` as one ``[out, N*r]`` matrix, rebuilt only when B changes."""
        key = (self.lora_B._version, self.lora_B.data_ptr())
        if self._b_all_key != key:
            n, out, rank = self.lora_B.shape
            self._b_all_cache = self.lora_B.detach().permute(1, 0, 2).reshape(out, n * rank)
            self._b_all_key = key
        return self._b_all_cache


def _matches(name: str, targets: Sequence[str]) -> bool:
    # PEFT's rule for a list of target names: the module's full name or its last dotted parts.
    return any(name == t or name.endswith("." + t) for t in targets)


class MultiLoraModel:
    """Installs ``n_adapters`` stacked LoRA adapters in ``base_model`` (in place) until :meth:`remove`.

    All slots start at zero (no effect); fill them with :meth:`load_adapter`. Route rows with
    :meth:`use_slots` before calling ``self.model`` (or ``generate``) as usual.
    """

    def __init__(self, base_model: nn.Module, n_adapters: int, lora: LoraParams):
        if n_adapters < 1:
            raise ValueError("n_adapters must be at least 1")
        self.model = base_model
        self.n_adapters = n_adapters
        self.lora = lora
        self.router = SlotRouter()
        self.layers: dict[str, StackedLoraLinear] = {}
        targets = list(lora.target_modules)
        found = [(n, m) for n, m in base_model.named_modules() if isinstance(m, nn.Linear) and _matches(n, targets)]
        if not found:
            raise ValueError(f"no Linear layer of the model matches target_modules {targets}")
        for name, module in found:
            parent_name, _, child = name.rpartition(".")
            parent = base_model.get_submodule(parent_name) if parent_name else base_model
            layer = StackedLoraLinear(module, n_adapters, lora.rank, lora.scaling, lora.lora_dropout, self.router)
            layer.train(module.training)
            setattr(parent, child, layer)
            self.layers[name] = layer

    @property
    def device(self) -> torch.device:
        return next(iter(self.layers.values())).lora_A.device

    def parameters(self) -> list[nn.Parameter]:
        """Every stacked tensor, A then B per layer, in module order."""
        return [p for layer in self.layers.values() for p in (layer.lora_A, layer.lora_B)]

    def trainable_params_per_adapter(self) -> int:
        return sum(p[0].numel() for p in self.parameters())

    def set_slots(self, slots: Sequence[int] | torch.Tensor | int | None) -> None:
        """Route row ``i`` of the next forward calls to adapter ``slots[i]`` (-1: none; None: all base)."""
        self.router.set(slots, self.n_adapters, self.device)

    @contextmanager
    def use_slots(self, slots: Sequence[int] | torch.Tensor | int | None) -> Iterator[None]:
        saved = self.router.saved()
        self.set_slots(slots)
        try:
            yield
        finally:
            self.router.restore(saved)

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.n_adapters:
            raise IndexError(f"adapter slot {slot} outside 0..{self.n_adapters - 1}")

    @torch.no_grad()
    def load_adapter(self, slot: int, peft_state_dict: dict[str, torch.Tensor]) -> None:
        """Copy a PEFT LoRA state dict (saved or raw key naming) into ``slot``."""
        self._check_slot(slot)
        seen = set()
        for key, value in peft_state_dict.items():
            m = _KEY.match(key)
            if m is None:
                continue
            layer = self.layers.get(m["module"])
            if layer is None:
                raise KeyError(f"adapter key {key!r} names no target layer of this model")
            dest = layer.lora_A if m["ab"] == "A" else layer.lora_B
            if tuple(value.shape) != tuple(dest.shape[1:]):
                raise ValueError(f"adapter key {key!r} has shape {tuple(value.shape)}, expected {tuple(dest.shape[1:])}")
            dest[slot].copy_(value)
            seen.add((m["module"], m["ab"]))
        missing = [f"{n}.lora_{ab}" for n in self.layers for ab in "AB" if (n, ab) not in seen]
        if missing:
            raise KeyError(f"adapter state dict lacks {len(missing)} tensors, e.g. {missing[0]}")

    @torch.no_grad()
    def load_all(self, peft_state_dict: dict[str, torch.Tensor]) -> None:
        """Put the same adapter in every slot (e.g. a fresh PEFT init)."""
        self.load_adapter(0, peft_state_dict)
        for layer in self.layers.values():
            layer.lora_A[1:].copy_(layer.lora_A[0:1].expand_as(layer.lora_A[1:]))
            layer.lora_B[1:].copy_(layer.lora_B[0:1].expand_as(layer.lora_B[1:]))

    @torch.no_grad()
    def adapter_state_dict(self, slot: int) -> dict[str, torch.Tensor]:
        """Slot ``slot`` as a PEFT state dict on the CPU (keys as in ``adapter_model.safetensors``)."""
        self._check_slot(slot)
        out = {}
        for name, layer in self.layers.items():
            out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A[slot].detach().cpu().clone()
            out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B[slot].detach().cpu().clone()
        return out

    def peft_config(self, base_model_name: str | None = None) -> LoraConfig:
        # Short names, as PEFT stores them, so the config also fits another copy of the model.
        targets = sorted({name.rsplit(".", 1)[-1] for name in self.layers})
        return LoraConfig(r=self.lora.rank, lora_alpha=self.lora.lora_alpha, lora_dropout=self.lora.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM", base_model_name_or_path=base_model_name)

    def save_peft_adapter(self, slot: int, out_dir: Path | str, base_model_name: str | None = None) -> Path:
        """Write slot ``slot`` as a folder ``PeftModel.from_pretrained`` loads; atomic (temp dir, rename)."""
        return write_peft_folder(out_dir, self.peft_config(base_model_name), self.adapter_state_dict(slot))

    def remove(self) -> nn.Module:
        """Put the original Linear layers back and return the base model."""
        for name, layer in self.layers.items():
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, layer.base_layer)
        self.layers = {}
        return self.model

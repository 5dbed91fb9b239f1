"""A KV cache whose layers grow into spare room instead of being copied at every generated token.

transformers' ``DynamicLayer`` concatenates each new column onto the whole cache, so decoding n
tokens copies the cache n times; in a batch of 16 replies on a 2-core CPU that copying was a fifth
of every decode step. :class:`RoomyLayer` keeps a buffer with room to spare and writes new columns
into it; ``keys``/``values`` stay views of the filled part, so every reader of a ``DynamicLayer``
sees what it expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def _spare(columns: int) -> int:
    """Room added when a buffer grows: half again, at least 64 columns (a typical reply's length)."""
    return max(64, columns // 2)


class RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` that appends in place into spare room (``[rows, heads, capacity, head_dim]``)."""

    _key_room: torch.Tensor | None = None
    _value_room: torch.Tensor | None = None

    def _ours(self) -> bool:
        # Anything that replaced ``keys`` (crop, row selection, offloading) leaves a tensor that is
        # not a view of our room; the room is then rebuilt from it.
        return (self._key_room is not None and self.keys.data_ptr() == self._key_room.data_ptr()
                and self.keys.shape[:2] == self._key_room.shape[:2])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled = self.keys.shape[-2] if self.keys.dim() == 4 else 0
        needed = filled + key_states.shape[-2]
        if not self._ours() or needed > self._key_room.shape[-2]:
            rows, heads, _, dim = key_states.shape
            shape = (rows, heads, needed + _spare(needed), dim)
            key_room = key_states.new_empty(shape)
            value_room = value_states.new_empty((*shape[:3], value_states.shape[-1]))
            if filled:
                key_room[:, :, :filled] = self.keys
                value_room[:, :, :filled] = self.values
            self._key_room, self._value_room = key_room, value_room
        self._key_room[:, :, filled:needed] = key_states
        self._value_room[:, :, filled:needed] = value_states
        self.keys = self._key_room[:, :, :needed]
        self.values = self._value_room[:, :, :needed]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices``, with their spare room."""
        if not self.is_initialized or self.get_seq_length() == 0:
            return
        filled = self.keys.shape[-2]
        if self._ours():
            self._key_room = self._key_room[indices]
            self._value_room = self._value_room[indices]
            self.keys = self._key_room[:, :, :filled]
            self.values = self._value_room[:, :, :filled]
        else:
            self.keys = self.keys[indices]
            self.values = self.values[indices]


def roomy_cache(model: torch.nn.Module,
                layers: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are :class:`RoomyLayer`, holding
    ``layers`` (each layer's keys and values) if given."""
    cache = DynamicCache(config=model.config)
    if hasattr(cache, "layers"):
        cache.layers = [RoomyLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
        if layers is not None:
            for layer, (keys, values) in zip(cache.layers, layers):
                layer.update(keys, values)
        return cache
    return DynamicCache(list(layers) if layers is not None else None)  # transformers without per-layer caches


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only the batch rows ``rows`` of ``cache``, in that order."""
    if hasattr(cache, "layers"):
        for layer in cache.layers:
            layer.batch_select_indices(rows)
    else:
        cache.batch_select_indices(rows)

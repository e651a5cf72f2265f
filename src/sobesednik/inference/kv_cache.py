"""A KV cache that appends each step's keys and values into reserved room instead of concatenating.

`transformers`' `DynamicLayer` grows by `torch.cat`, which copies every layer's whole cache on every decoding
step: at 16 rows that was 15% of a reply's time on a 2-core CPU (`docs/benchmarks.md`). `ReservedLayer`
allocates room for `headroom` more tokens and writes new ones in place; what it returns are views of that
room, so attention reads the same numbers. A finished row leaving the batch (`batch_select_indices`) moves
the rows after it down in place; only running out of room copies into a bigger block.
`stack_caches` puts the rows of two caches into one (continuous batching: new requests join a running batch).
After a packed prompt pass (`packing.py`: all prompts as one row of tokens), the first update scatters each
prompt's keys and values into its own left-padded row.

    output = model(input_ids=ids, cache=reserved_cache(), use_cache=True)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

HEADROOM = 64  # tokens reserved past the current length; a default reply (40 tokens) never re-allocates


class ReservedLayer(DynamicLayer):
    """One layer's keys and values as views of a block with spare room at the end of the sequence axis."""

    headroom = HEADROOM
    _blocks: tuple[torch.Tensor, torch.Tensor] | None = None  # (keys, values), each [batch, heads, room, width]

    def __init__(self, packed: Sequence[int] = ()) -> None:
        super().__init__()
        self.packed = tuple(packed)  # prompt lengths of a packed first update (one row holding them all)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.packed:
            return self._unpack(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._fits(end, key_states):
            self._reserve(start, end, key_states)
        keys, values = self._blocks  # type: ignore[misc]
        keys[..., start:end, :] = key_states
        values[..., start:end, :] = value_states
        self.keys, self.values = keys[..., :end, :], values[..., :end, :]
        return self.keys, self.values

    def _unpack(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store packed prompts (one row of `sum(self.packed)` tokens) as left-padded rows; return them as given:
        attention over a packed pass runs per prompt on the packed tensors (`packing.packed_attention`)."""
        lengths, self.packed = self.packed, ()
        width = max(lengths)
        _, heads, _, head_width = key_states.shape
        self._blocks = tuple(key_states.new_zeros((len(lengths), heads, width + self.headroom, head_width))
                             for _ in range(2))  # type: ignore[assignment]
        for block, packed in zip(self._blocks, (key_states, value_states), strict=True):
            for row, prompt in enumerate(packed[0].split(lengths, dim=1)):
                block[row, :, width - prompt.shape[1]:width] = prompt
        keys, values = self._blocks
        self.keys, self.values = keys[..., :width, :], values[..., :width, :]
        return key_states, value_states

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.get_seq_length()
        keep = indices.tolist()
        if self._blocks is None or not length or keep != sorted(set(keep)):
            return super().batch_select_indices(indices)
        # Rows leave, the order stays: move each kept row down into the first free slot of the same block, so
        # nothing is allocated and the rows before the first one that left are not touched.
        for block in self._blocks:
            for slot, row in enumerate(keep):
                if slot != row:
                    block[slot] = block[row]
        keys, values = (block[: len(keep)] for block in self._blocks)
        self._blocks = (keys, values)
        self.keys, self.values = keys[..., :length, :], values[..., :length, :]

    def _fits(self, end: int, key_states: torch.Tensor) -> bool:
        """Whether the current block still backs `self.keys` and has room up to `end`."""
        if self._blocks is None:
            return False
        block = self._blocks[0]
        return (block.data_ptr() == self.keys.data_ptr() and end <= block.shape[-2]
                and block.shape[:2] == key_states.shape[:2])

    def _reserve(self, start: int, end: int, key_states: torch.Tensor) -> None:
        """A new block for `end + headroom` tokens holding the cached `start` tokens."""
        cached = [self] if start else []
        self._blocks = _blocks_holding(cached, key_states, rows=key_states.shape[0], length=start,
                                       room=end + self.headroom)

    @classmethod
    def stacked(cls, layers: list[DynamicLayer]) -> ReservedLayer:
        """One layer holding the rows of `layers` in order, each right-aligned to the longest (left padding)."""
        length = max(layer.get_seq_length() for layer in layers)
        rows = sum(layer.keys.shape[0] for layer in layers)
        stacked = cls()
        stacked.lazy_initialization(layers[0].keys, layers[0].values)
        stacked._blocks = _blocks_holding(layers, layers[0].keys, rows=rows, length=length,
                                          room=length + cls.headroom)
        stacked.keys, stacked.values = stacked._blocks[0][..., :length, :], stacked._blocks[1][..., :length, :]
        return stacked


def _blocks_holding(layers: list[DynamicLayer], like: torch.Tensor, *, rows: int, length: int,
                    room: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New (keys, values) blocks of `rows` × `room` tokens holding the cached rows of `layers` in order, each
    right-aligned to end at `length` (left padding for the shorter ones)."""
    _, heads, _, width = like.shape
    # Zeros, not garbage, in the padding: masked attention weighs it by exactly 0, and 0 × NaN would be NaN.
    keys, values = (like.new_zeros((rows, heads, room, width)) for _ in range(2))
    start = 0
    for layer in layers:
        end, cached = start + layer.keys.shape[0], layer.get_seq_length()
        keys[start:end, :, length - cached:length] = layer.keys
        values[start:end, :, length - cached:length] = layer.values
        start = end
    return keys, values


def stack_caches(first: Cache, second: Cache) -> Cache:
    """A cache with the rows of `first`, then those of `second`, left-padded to the longer of the two lengths.

    The caller pads the attention masks the same way; positions are per row and do not change.
    """
    layers = [ReservedLayer.stacked([a, b]) for a, b in zip(first.layers, second.layers, strict=True)]
    return Cache(layers=layers)


def reserved_cache(packed: Sequence[int] = ()) -> Cache:
    """An empty cache whose layers (created on first use, one per model layer) are `ReservedLayer`s; `packed`:
    the prompt lengths of a packed first pass, whose keys and values each layer stores as one row per prompt."""
    return Cache(layer_class_to_replicate=functools.partial(ReservedLayer, packed))

"""Batches that spend no compute on padding: packing (the default) or dynamic padding.

Dialogue samples are short (tens of tokens) and uneven, so padding every sample to `max_length` wastes most
of the compute. Two remedies, chosen by `bench/train.py`:

- `pack_samples`: concatenate samples into rows of up to `max_length` tokens. Each sample's `position_ids`
  restart at 0 and no attention mask is passed, which makes transformers build a block-diagonal causal mask
  (`masking_utils.find_packed_sequence_indices`): a sample never attends to its neighbours in the row.
  Labels stay per sample; a row's first label position is always a context token, so no loss crosses a seam.
- `PadCollator`: pad each batch only to its own longest sample (best with length-grouped batches).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sobesednik.training.dataset import IGNORE_INDEX, Sample


def pack_samples(samples: Sequence[Sample], max_length: int, seed: int) -> list[dict[str, list[int]]]:
    """Shuffle (with `seed`) and greedily pack samples into rows of at most `max_length` tokens."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    rows: list[dict[str, list[int]]] = []
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for index in order:
        sample = samples[index]
        if row["input_ids"] and len(row["input_ids"]) + len(sample) > max_length:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": []}
        row["input_ids"] += sample.input_ids
        row["labels"] += sample.labels
        row["position_ids"] += list(range(len(sample)))
    if row["input_ids"]:
        rows.append(row)
    return rows


class PackedDataset:
    """Rows from `pack_samples` as a map-style dataset."""

    def __init__(self, samples: Sequence[Sample], max_length: int, seed: int) -> None:
        self.rows = pack_samples(samples, max_length, seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


@dataclass(frozen=True)
class PadCollator:
    """Pads a batch to its longest row, right side; packed rows keep their `position_ids` and get no mask.

    For packed rows the padding tail is its own "sample" (positions restart at 0), so nothing attends to it.
    """

    pad_token_id: int
    pad_to_multiple_of: int = 8  # tensor-core and oneDNN kernels prefer aligned shapes

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(row["input_ids"]) for row in rows)
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in rows[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for row in rows:
            length = len(row["input_ids"])
            pad = width - length
            batch["input_ids"].append(row["input_ids"] + [self.pad_token_id] * pad)
            batch["labels"].append(row["labels"] + [IGNORE_INDEX] * pad)
            if packed:
                batch["position_ids"].append(row["position_ids"] + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * length + [0] * pad)
        return {name: torch.tensor(values, dtype=torch.long) for name, values in batch.items()}

"""Batching without wasted padding: exact tensors, and packed rows that never attend across samples."""

from __future__ import annotations

import itertools
from pathlib import Path

from sobesednik.training.collate import PackedDataset, PadCollator, pack_samples
from sobesednik.training.dataset import IGNORE_INDEX, Sample

A = Sample([5, 6, 7], [IGNORE_INDEX, 6, 7])
B = Sample([8, 9], [IGNORE_INDEX, 9])
C = Sample([10, 11, 12, 13], [IGNORE_INDEX, IGNORE_INDEX, 12, 13])


def test_pad_collator_pads_to_the_batch_not_the_max_length():
    batch = PadCollator(pad_token_id=1, pad_to_multiple_of=4)([{"input_ids": s.input_ids, "labels": s.labels}
                                                                for s in (A, B)])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [8, 9, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [-100, 9, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert "position_ids" not in batch


def test_packing_restarts_positions_and_keeps_labels_per_sample():
    rows = pack_samples([A, B, C], max_length=6, seed=0)
    assert len(rows) == 2 and all(len(row["input_ids"]) <= 6 for row in rows)  # 9 tokens need two rows of 6
    assert sum(len(row["input_ids"]) for row in rows) == len(A) + len(B) + len(C)
    for row in rows:
        starts = [i for i, position in enumerate(row["position_ids"]) if position == 0]
        for start in starts:  # every sample starts with an unlabelled context token: no loss across a seam
            assert row["labels"][start] == IGNORE_INDEX
    batch = PadCollator(pad_token_id=1, pad_to_multiple_of=8)(PackedDataset([A, B], 8, seed=0).rows)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist()[0][5:] == [0, 1, 2]  # the padding tail is a sample of its own


def test_packed_logits_equal_separate_logits(tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.config.use_cache = False
    samples = [Sample(list(range(20 + 10 * k, 20 + 10 * k + n)), [IGNORE_INDEX] * n) for k, n in enumerate((7, 12, 5))]
    row = PadCollator(pad_token_id=1)(pack_samples(samples, 64, seed=0))  # one row of 24 tokens, no padding
    positions = row["position_ids"][0].tolist()
    starts = [i for i, position in enumerate(positions) if position == 0] + [len(positions)]
    assert len(starts) == 4
    with torch.no_grad():
        packed = model(input_ids=row["input_ids"], position_ids=row["position_ids"]).logits[0]
        for start, end in itertools.pairwise(starts):
            alone = model(input_ids=row["input_ids"][:, start:end]).logits[0]
            torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-4)

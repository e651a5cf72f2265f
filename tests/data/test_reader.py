"""The worker-process reader gives exactly what the in-process reader gives, errors included."""

from __future__ import annotations

from pathlib import Path

import pytest

from sobesednik.data import prepare as prepare_module
from sobesednik.data.split import SPLITS
from sobesednik.errors import ExportFormatError

from .exports import run_prepare


def test_parallel_reader_writes_the_same_dataset(sample_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sequential = run_prepare(sample_export, tmp_path / "one")
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    parallel = run_prepare(sample_export, tmp_path / "two", progress=True)
    assert parallel == sequential
    for name in [f"{split}.jsonl" for split in SPLITS]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    manifest_one = (tmp_path / "one" / "manifest.json").read_text(encoding="utf-8")
    manifest_two = (tmp_path / "two" / "manifest.json").read_text(encoding="utf-8")
    assert manifest_one.split('"sha256"')[1][:70] == manifest_two.split('"sha256"')[1][:70]


def test_parallel_reader_raises_the_workers_error(sample_export: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    truncated = tmp_path / "result.json"
    truncated.write_bytes(sample_export.read_bytes()[:50_000])
    with pytest.raises(ExportFormatError, match="is truncated"):
        run_prepare(truncated, tmp_path / "out")

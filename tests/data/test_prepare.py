"""End-to-end tests of `sobesednik prepare` on the shipped sample export, through the CLI and the stage function."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.data.split import SPLITS

runner = CliRunner()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prepared_data_dir_follows_the_contract(prepared_data_dir: Path) -> None:
    samples = {split: _read(prepared_data_dir / f"{split}.jsonl") for split in SPLITS}
    assert all(samples.values()), {split: len(rows) for split, rows in samples.items()}
    for rows in samples.values():
        for row in rows:
            messages = row["messages"]
            assert messages[-1]["role"] == "assistant"
            assert len(messages) >= 2
            assert all(a["role"] != b["role"] for a, b in pairwise(messages))
            assert all(message["content"].strip() for message in messages)
            assert set(row["meta"]) >= {"chat_id", "thread", "message_ids"}
    stats = json.loads((prepared_data_dir / "stats.json").read_text(encoding="utf-8"))
    assert stats["samples"] == sum(len(rows) for rows in samples.values())
    assert (prepared_data_dir / "stats.md").read_text(encoding="utf-8").startswith("# Dataset statistics")
    assert (prepared_data_dir / "stats.png").read_bytes().startswith(b"\x89PNG")


def test_cli_prepare_writes_dataset_and_reports(sample_export: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", str(sample_export), "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "samples (train" in result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["options"]["gap_minutes"] == 60


def test_cli_prepare_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", str(tmp_path / "nope.json"), "--out", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "nope.json: no such file" in result.output
    assert "Traceback" not in result.output

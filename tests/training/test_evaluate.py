"""`evaluate`: reply loss beside the base, style statistics, the table and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.errors import ConfigError
from sobesednik.training.evaluate import evaluate, format_report
from sobesednik.training.metrics import style_stats
from sobesednik.training.settings import EvaluateSettings


def test_style_stats_of_known_replies():
    stats = style_stats(["привет как дела", "Ну да, конечно! 😂", "привет"])
    assert stats["replies"] == 3
    assert stats["mean_words"] == pytest.approx(8 / 3)  # the emoji counts as a word
    assert stats["median_words"] == 3
    assert stats["distinct_1"] == pytest.approx(7 / 8)  # "привет" twice
    assert stats["distinct_2"] == pytest.approx(1.0)
    assert stats["emoji_per_reply"] == pytest.approx(1 / 3)
    assert stats["lowercase_start_rate"] == pytest.approx(2 / 3)


def test_evaluate_run_against_its_base(trained_run_dir: Path, prepared_data_dir: Path, tmp_path: Path):
    settings = EvaluateSettings(model=str(trained_run_dir), data=prepared_data_dir / "valid.jsonl",
                                compare_base=True, samples=3, max_new_tokens=8, out=tmp_path / "eval.json")
    report = evaluate(settings)
    assert report["model_figures"]["loss"] < report["base_figures"]["loss"]
    assert report["model_figures"]["style"]["replies"] == 3
    assert json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))["dialogues"] == report["dialogues"]
    table = format_report(report)
    assert "perplexity" in table and "fine-tuned" in table and "base" in table


def test_cli_evaluates_an_exported_model(exported_model_dir: Path, prepared_data_dir: Path):
    result = CliRunner().invoke(app, ["evaluate", "--model", str(exported_model_dir), "--data",
                                      str(prepared_data_dir / "test.jsonl"), "--samples", "2", "--max-new-tokens", "5"])
    assert result.exit_code == 0, result.output
    assert "distinct_2" in result.output


def test_compare_base_of_a_model_dir_needs_the_base(exported_model_dir: Path, prepared_data_dir: Path):
    settings = EvaluateSettings(model=str(exported_model_dir), data=prepared_data_dir / "test.jsonl",
                                compare_base=True)
    with pytest.raises(ConfigError, match="pass its base with --base"):
        evaluate(settings)

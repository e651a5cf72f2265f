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


def test_evaluate_reports_fidelity_for_the_model_and_its_base(speaker_run_dir: Path, speaker_data_dir: Path):
    report = evaluate(EvaluateSettings(model=str(speaker_run_dir), data=speaker_data_dir / "test.jsonl",
                                       compare_base=True, samples=4, max_new_tokens=12))
    for column in ("model_figures", "base_figures"):
        fidelity = report[column]["fidelity"]
        assert 0 <= fidelity["fidelity"] <= 1 and 0 <= fidelity["stop_rate"] <= 1 and fidelity["replies"] == 4
    assert report["notes"] == [] and 0 <= report["real_target_share"] <= 1
    table = format_report(report)
    assert "stop_rate" in table and "Δ characteristic_word_share" in table and "docs/fidelity.md" in table


def _data_dir(tmp_path: Path, source: Path, speakers: list[tuple[str, str]], targets: list[str]) -> Path:
    (tmp_path / "test.jsonl").write_bytes((source / "test.jsonl").read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps({"targets": targets}), encoding="utf-8")
    lines = [json.dumps({"speaker": speaker, "text": text}, ensure_ascii=False) for speaker, text in speakers]
    (tmp_path / "speakers.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "test.jsonl"


@pytest.mark.parametrize(("speakers", "line"), [
    ([("user1", f"реплика {i}") for i in range(20)], "needs a second speaker"),
    ([("user1", "ну да"), ("user1", "ага")] + [("user2", f"реплика {i}") for i in range(20)],
     "has 2 train replies; the authorship model needs at least 10"),
])
def test_evaluate_on_data_fidelity_cannot_use_says_why_in_one_line(trained_run_dir: Path, prepared_data_dir: Path,
                                                                   tmp_path: Path, speakers: list, line: str):
    data = _data_dir(tmp_path, prepared_data_dir, speakers, ["user1"])
    result = CliRunner().invoke(app, ["evaluate", "--model", str(trained_run_dir), "--data", str(data),
                                      "--samples", "2", "--max-new-tokens", "5"])
    assert result.exit_code == 0, result.output
    notes = [text for text in result.output.splitlines() if text.startswith("note:")]
    assert len(notes) == 1 and line in notes[0] and "cannot be computed" in notes[0]
    assert "Traceback" not in result.output and "perplexity" in result.output and "stop_rate" in result.output


def test_evaluate_on_a_dataset_of_every_author_says_to_pick_a_speaker(trained_run_dir: Path,
                                                                      prepared_data_dir: Path):
    report = evaluate(EvaluateSettings(model=str(trained_run_dir), data=prepared_data_dir / "test.jsonl",
                                       samples=2, max_new_tokens=5))
    assert len(report["notes"]) == 1 and "prepare with --speaker NAME" in report["notes"][0]
    assert report["model_figures"]["fidelity"]["fidelity"] is None
    assert 0 <= report["model_figures"]["fidelity"]["stop_rate"] <= 1

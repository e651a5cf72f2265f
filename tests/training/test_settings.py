"""Training settings: validation at construction, the YAML config file, flags over file over environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.errors import ConfigError
from sobesednik.settings_cli import Given
from sobesednik.training.settings import EvaluateSettings, TrainSettings, evaluation_max_length, read_config_file


def test_bad_values_are_refused_at_construction():
    with pytest.raises(ValueError, match="lora_target_modules is empty"):
        TrainSettings(lora_target_modules=[])
    with pytest.raises(ValueError, match="greater than 0"):
        TrainSettings(learning_rate=0)


def test_environment_sets_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOBESEDNIK_TRAIN_MAX_LENGTH", "128")
    assert TrainSettings().max_length == 128


def test_config_file_values_lose_to_given_flags(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"max-length": 64, "lora_r": 4, "versions": {"torch": "x"}}), encoding="utf-8")
    settings = Given(TrainSettings, {"lora_r": 16}).settings(under=read_config_file(path))
    assert (settings.max_length, settings.lora_r, settings.epochs) == (64, 16, 3.0)


@pytest.mark.parametrize(("text", "problem"), [("[1, 2]", "must hold a mapping"), ("a: [", "not valid YAML")])
def test_bad_config_files_are_clear_errors(tmp_path: Path, text: str, problem: str):
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        read_config_file(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.yaml")


def test_cli_reports_bad_flag_values_in_one_line(tmp_path: Path):
    result = CliRunner().invoke(app, ["train", "--lora-r", "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "invalid TrainSettings: lora_r" in result.output


def test_evaluate_scores_a_run_at_its_own_max_length(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"max_length": 64, "lora_r": 4}), encoding="utf-8")
    assert evaluation_max_length(EvaluateSettings(model=str(run))) == 64
    assert evaluation_max_length(EvaluateSettings(model=str(run), max_length=32)) == 32  # a given flag wins
    assert evaluation_max_length(EvaluateSettings(model=str(tmp_path / "model-dir"))) == TrainSettings().max_length

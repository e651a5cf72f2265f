"""`sobesednik demo` runs the whole way offline and leaves every artefact where it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sobesednik.demo import SCRIPTED_TURNS, DemoPaths


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_the_chat(tmp_path: Path, sample_export: Path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sobesednik", "demo", "--export", str(sample_export), "--out", str(out),
         "--pretrain-steps", "30", "--train-steps", "6"],
        capture_output=True, text=True, timeout=600, env={**_clean_env(), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    paths = DemoPaths.under(out)
    assert (paths.chat / "train.jsonl").stat().st_size > (paths.data / "train.jsonl").stat().st_size > 0
    assert (paths.data / "stats.md").exists()
    assert (paths.run / "adapter").is_dir()
    assert (paths.run / "loss.png").exists()
    assert (paths.run / "samples.md").exists()
    assert json.loads((paths.model / "config.json").read_text())["model_type"] == "gpt2"
    for turn in SCRIPTED_TURNS:
        assert f"вы:         {turn}" in result.stdout
    assert result.stdout.count("собеседник:") == len(SCRIPTED_TURNS)
    # The base and the tuned model side by side, under the stage's header.
    assert "6/6 before and after" in result.stdout and "┃ base " in result.stdout and "┃ tuned " in result.stdout
    # Quiet: the demo's own stage lines only, no library warnings or progress bars.
    for noise in ("FutureWarning", "attention_mask", "loss_type", "it/s]", "Loading weights", "Warning"):
        assert noise not in result.stdout + result.stderr, noise
    # The service was stopped cleanly: uvicorn logs the end of its shutdown.
    assert "Application shutdown complete" in (out / "serve.log").read_text()


def _clean_env() -> dict[str, str]:
    import os

    return {name: value for name, value in os.environ.items() if not name.startswith("SOBESEDNIK_")}

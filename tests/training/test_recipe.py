"""`plan_steps`: a small chat trains for at least `min_steps`; explicit --epochs / --max-steps win."""

from __future__ import annotations

from pathlib import Path

from sobesednik.training.recipe import EVALUATIONS, plan_steps
from sobesednik.training.settings import TrainSettings


def _settings(**fields: object) -> TrainSettings:
    return TrainSettings(data=Path("data"), base="base", out=Path("run"), _env_file=None, **fields)


def test_a_small_chat_trains_for_min_steps_and_evaluates_evaluations_times() -> None:
    plan = plan_steps(_settings(batch_size=8, min_steps=300), rows=60, num_processes=1)  # 3 epochs by default
    assert (plan.steps_per_epoch, plan.max_steps, plan.eval_steps) == (8, 300, 300 // EVALUATIONS)
    assert "only 24" in plan.reason


def test_a_large_dataset_trains_its_epochs() -> None:
    plan = plan_steps(_settings(batch_size=8, min_steps=300), rows=8000, num_processes=2)
    assert plan.steps_per_epoch == 500 and plan.max_steps == 500 * _settings().epochs


def test_explicit_epochs_and_max_steps_win_over_min_steps() -> None:
    assert plan_steps(_settings(batch_size=8, epochs=2.0), rows=60, num_processes=1).max_steps == 16
    assert plan_steps(_settings(max_steps=7), rows=60, num_processes=1).max_steps == 7
    assert plan_steps(_settings(min_steps=0, epochs=1.0), rows=60, num_processes=1).max_steps == 8


def test_explicit_eval_steps_are_kept() -> None:
    assert plan_steps(_settings(eval_steps=25), rows=60, num_processes=1).eval_steps == 25

"""How long `train` runs and how often it evaluates, scaled to the dataset, when the flags leave it open.

A chat's replies are short (a few tens of tokens), so packed into rows of `max_length` tokens even thousands of
samples make few rows: 450 replies of one speaker pack into ~60 rows, 8 optimizer steps an epoch. Three epochs
would stop after ~25 steps, long before LoRA has moved the model's style (bench/persona.py: 5 % of replies
attributed to the speaker before and after). So, unless `--max-steps` or `--epochs` is given, a run lasts at
least `min_steps` optimizer steps, as many epochs as that takes. Evaluation then runs `EVALUATIONS` times per
run instead of once per epoch, so early stopping sees the same number of chances on any dataset size.

    plan = plan_steps(settings, rows=len(train_dataset), num_processes=1)
    settings = settings.model_copy(update={"max_steps": plan.max_steps, "eval_steps": plan.eval_steps})
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sobesednik.training.settings import TrainSettings

# Evaluations per run when --eval-steps is 0: with patience 3 a run can stop after the first ~40 % once
# the valid loss stops improving, and each evaluation of a small valid split costs a step or two.
EVALUATIONS = 10


@dataclass(frozen=True)
class StepPlan:
    max_steps: int  # optimizer steps of the run
    eval_steps: int  # evaluate (and checkpoint) every this many steps
    steps_per_epoch: int
    reason: str  # one line for the log and config.yaml: why this many steps


def plan_steps(settings: TrainSettings, rows: int, num_processes: int) -> StepPlan:
    """The run's length and evaluation cadence for `rows` training rows (packed rows or samples)."""
    per_step = settings.batch_size * settings.gradient_accumulation_steps * num_processes
    steps_per_epoch = max(1, math.ceil(rows / per_step))
    epoch_steps = math.ceil(settings.epochs * steps_per_epoch)
    if settings.max_steps > 0:
        steps, reason = settings.max_steps, f"--max-steps {settings.max_steps}"
    elif "epochs" in settings.model_fields_set or epoch_steps >= settings.min_steps:
        steps, reason = epoch_steps, f"{settings.epochs:g} epochs of {steps_per_epoch} steps"
    else:
        steps = settings.min_steps
        reason = (f"--min-steps {settings.min_steps}: {settings.epochs:g} epochs of {steps_per_epoch} steps "
                  f"would be only {epoch_steps}")
    eval_steps = settings.eval_steps or max(1, math.ceil(steps / EVALUATIONS))
    return StepPlan(steps, eval_steps, steps_per_epoch, reason)

"""The `train` stage: LoRA fine-tuning of a base model on a prepared dataset, with transformers' `Trainer`.

    sobesednik train --data data --base tinkoff-ai/ruDialoGPT-medium --out runs/me
    accelerate launch --num_processes 2 -m sobesednik train ...     # data-parallel, unchanged
    torchrun --nproc_per_node 2 -m sobesednik train ...

RUN_DIR receives: `adapter/` (peft adapter + the tokenizer it was trained with, the best checkpoint by valid
loss), `checkpoints/` (for `--resume`), `metrics.jsonl`, `loss.png`, `samples.md` / `samples.jsonl` (replies to
valid contexts before and after training beside the real ones), `fidelity.json` (persona fidelity before and
after training, docs/fidelity.md; also measured at each evaluation into metrics.jsonl and loss.png) and
`config.yaml` (every setting, resolved, with library versions; `train --config RUN_DIR/config.yaml` repeats the
run). Replies are sampled by the service's `Generator`. Only the main process writes files.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.dialogue import data_file, read_jsonl
from sobesednik.errors import ConfigError, DatasetError
from sobesednik.modeling.load import ADAPTER_DIR, load_base
from sobesednik.training.collate import PackedDataset, PadCollator
from sobesednik.training.dataset import ConversationDataset
from sobesednik.training.fidelity import FIDELITY_DEFINITION, FidelityReference, measure_fidelity, reference_or_reason
from sobesednik.training.lora import save_adapter, wrap_with_lora
from sobesednik.training.recipe import plan_steps
from sobesednik.training.report import plot_losses, write_samples
from sobesednik.training.settings import TrainSettings

CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    adapter_dir: Path
    steps: int
    best_valid_loss: float | None
    train_samples: int
    dropped_too_long: int
    process_index: int  # this process in a data-parallel run (0 writes the files)
    num_processes: int


def resolve_precision(precision: str) -> str:
    """The precision to train in: `auto` as `hardware.training_precision` picks it; fp16 only on CUDA."""
    from sobesednik.hardware import probe, training_precision

    if precision == "fp16" and not probe().cuda:
        raise ConfigError("--precision fp16 needs a CUDA GPU; on CPU use bf16 (fast with AMX) or fp32")
    return training_precision(precision)


def _library_versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    from sobesednik import __version__

    return {"sobesednik": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "transformers": transformers.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__}


def _check_run_dir(settings: TrainSettings) -> None:
    checkpoints = settings.out / CHECKPOINTS_DIR
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    if settings.resume and not has_checkpoints:
        raise ConfigError(f"--resume: no checkpoint in {checkpoints}; drop --resume to start a new run")
    if not settings.resume and (has_checkpoints or (settings.out / ADAPTER_DIR).exists()):
        raise ConfigError(f"{settings.out} already holds a run: pass --resume to continue it "
                          "or choose another --out")


def _training_arguments(settings: TrainSettings, precision: str) -> Any:
    import torch
    from transformers import TrainingArguments

    strategy = "steps" if settings.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(settings.out / CHECKPOINTS_DIR),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a share of the total steps
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=settings.eval_steps or None,
        save_steps=settings.eval_steps or None,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=settings.save_total_limit,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
        train_sampling_strategy="random" if settings.packing else "group_by_length",
        label_names=["labels"],
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=not settings.progress,
        seed=settings.seed,
        data_seed=settings.seed,
    )


class _Replies:
    """Replies of a model to the valid contexts, sampled the same way before, during and after training."""

    def __init__(self, tokenizer: Any, dialogues: list, reference: FidelityReference | str, seed: int) -> None:
        self.tokenizer, self.dialogues, self.reference, self.seed = tokenizer, dialogues, reference, seed

    def sample(self, model: Any) -> list:
        from sobesednik.inference.generator import Generator
        from sobesednik.training.metrics import sample_replies

        contexts = [dialogue[:-1] for dialogue in self.dialogues]
        return sample_replies(Generator(model, self.tokenizer), contexts, seed=self.seed)

    def fidelity(self, completions: list, count: int) -> dict[str, Any]:
        """The fidelity block of the first `count` completions."""
        return measure_fidelity(self.reference, [c.text for c in completions[:count]],
                                [c.finish_reason for c in completions[:count]],
                                [dialogue[-1]["content"] for dialogue in self.dialogues[:count]])


def _headline(stage: str, step: int, figures: dict[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl record of a fidelity measurement: its scalar figures only."""
    scalars = {key: value for key, value in figures.items() if isinstance(value, int | float) or value is None}
    return {"step": step, "stage": stage, **scalars}


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _fidelity_callback(path: Path, replies: _Replies, count: int) -> Any:
    from transformers import TrainerCallback

    class FidelityCallback(TrainerCallback):
        """Measure fidelity after every evaluation, on the main process, into metrics.jsonl (the loss.png curve)."""

        def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                figures = replies.fidelity(replies.sample(model), count)
                _append(path, _headline("train", state.global_step, figures) | {"epoch": state.epoch})

    return FidelityCallback()


def _num_processes() -> int:
    """Processes of a data-parallel launch (torchrun / accelerate set WORLD_SIZE), before the Trainer exists."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _metrics_callback(path: Path) -> Any:
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Append every log record (train loss, lr, eval loss) to metrics.jsonl, on the main process."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                _append(path, {"step": state.global_step, "epoch": state.epoch, **logs})

    return MetricsCallback()


def _training_bar() -> Any:
    from transformers import ProgressCallback

    class TrainingBar(ProgressCallback):
        """Trainer's bar as the stage's one display: the latest losses on the bar rather than a dict printed under it
        per log (metrics.jsonl holds them), and no second bar for each evaluation, which runs within a step."""

        def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
            pass

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            shown = {key: f"{value:.4g}" for key, value in (logs or {}).items() if key in ("loss", "eval_loss")}
            if state.is_world_process_zero and self.training_bar is not None and shown:
                self.training_bar.set_postfix(shown, refresh=False)

    return TrainingBar()


def train(settings: TrainSettings) -> TrainResult:
    """Run the stage; returns where the adapter went and what it reached."""
    import torch
    import yaml
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback, Trainer, set_seed

    from sobesednik.hardware import probe

    _check_run_dir(settings)
    precision = resolve_precision(settings.precision)
    set_seed(settings.seed)
    train_file, valid_file = data_file(settings.data, "train"), data_file(settings.data, "valid")
    model, tokenizer, added_ids = load_base(settings.base, load_in_4bit=settings.load_in_4bit, format=settings.format)
    if settings.max_length > model.config.max_position_embeddings:
        raise ConfigError(f"--max-length {settings.max_length} exceeds the model's "
                          f"{model.config.max_position_embeddings} positions: lower --max-length")
    train_set = ConversationDataset.from_file(train_file, tokenizer, settings.max_length)
    valid_dialogues = read_jsonl(valid_file)
    valid_set = ConversationDataset(valid_dialogues, tokenizer, settings.max_length)
    if not valid_set.samples:
        raise DatasetError(f"every sample of {valid_file} has a reply longer than --max-length "
                           f"{settings.max_length} tokens: raise --max-length")
    model.config.use_cache = False  # no KV cache in training; packing needs it off to build its mask
    frozen_dtype = torch.bfloat16 if precision == "bf16" and not settings.load_in_4bit else None
    model = wrap_with_lora(model, settings, added_ids, frozen_dtype)
    # Samples and fidelity share the first contexts: context i gets seed + i, so they are the same replies.
    answered = valid_dialogues[: max(settings.samples, settings.fidelity_samples)]
    fidelity_count = min(settings.fidelity_samples, len(answered))
    reference = reference_or_reason(settings.data) if fidelity_count else "fidelity is off (--fidelity-samples 0)"
    replies = _Replies(tokenizer, answered, reference, settings.seed)
    metrics_path = settings.out / "metrics.jsonl"
    train_rows = PackedDataset(train_set.samples, settings.max_length, settings.seed) if settings.packing else train_set
    plan = plan_steps(settings, len(train_rows), _num_processes())
    settings = settings.model_copy(update={"max_steps": plan.max_steps, "eval_steps": plan.eval_steps})

    trainer = Trainer(
        model=model,
        args=_training_arguments(settings, precision),
        train_dataset=train_rows,
        eval_dataset=valid_set,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=[_metrics_callback(metrics_path)]
        # Without a reference there is no curve to draw: before/after still give the stop rate.
        + ([_fidelity_callback(metrics_path, replies, fidelity_count)] if not isinstance(reference, str) else [])
        + ([EarlyStoppingCallback(early_stopping_patience=settings.patience)] if settings.patience else []),
    )
    # Without a progress bar (quiet logging: the demo, scripts) Trainer prints every log dict instead;
    # metrics.jsonl already holds them.
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_training_bar())
    main = trainer.is_world_process_zero()
    if main:
        settings.out.mkdir(parents=True, exist_ok=True)
        resolved = settings.model_dump(mode="json", exclude={"resume"}) | {
            "precision_used": precision, "hardware": probe().describe(), "steps_reason": plan.reason,
            "added_tokens": added_ids, "train_samples": len(train_set),
            "dropped_too_long": train_set.dropped_too_long, "num_processes": trainer.accelerator.num_processes,
            "versions": _library_versions()}
        (settings.out / "config.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False),
                                                  encoding="utf-8")
    before = replies.sample(trainer.model) if main and answered else []
    if before and fidelity_count:
        _append(metrics_path, _headline("before", trainer.state.global_step, replies.fidelity(before, fidelity_count)))

    trainer.train(resume_from_checkpoint=True if settings.resume else None)

    adapter_dir = settings.out / ADAPTER_DIR
    if main:
        save_adapter(trainer.model, tokenizer, adapter_dir)
        after = replies.sample(trainer.model) if answered else []
        if settings.samples:
            count = min(settings.samples, len(answered))
            write_samples(settings.out, answered[:count], [c.text for c in before[:count]],
                          [c.text for c in after[:count]])
        if fidelity_count:
            _write_fidelity(settings.out, replies, before, after, fidelity_count, trainer.state.global_step)
        plot_losses(metrics_path, settings.out / "loss.png")
    trainer.accelerator.wait_for_everyone()
    state = trainer.accelerator.state
    return TrainResult(settings.out, adapter_dir, trainer.state.global_step, trainer.state.best_metric,
                       len(train_set), train_set.dropped_too_long, state.process_index, state.num_processes)


def _write_fidelity(run_dir: Path, replies: _Replies, before: list, after: list, count: int, step: int) -> None:
    """fidelity.json (before/after blocks, target, definition) and the "after" record of metrics.jsonl."""
    figures = {"before": replies.fidelity(before, count), "after": replies.fidelity(after, count)}
    _append(run_dir / "metrics.jsonl", _headline("after", step, figures["after"]))
    reference = replies.reference
    report: dict[str, Any] = figures | {"target": None if isinstance(reference, str) else reference.target,
                                        "definition": FIDELITY_DEFINITION}
    if isinstance(reference, str):
        report["unavailable"] = reference
    (run_dir / "fidelity.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

"""The `train` stage: LoRA fine-tuning of a base model on a prepared dataset, with transformers' `Trainer`.

    sobesednik train --data data --base tinkoff-ai/ruDialoGPT-medium --out runs/me
    accelerate launch --num_processes 2 -m sobesednik train ...     # data-parallel, unchanged
    torchrun --nproc_per_node 2 -m sobesednik train ...

RUN_DIR receives: `adapter/` (peft adapter + the tokenizer it was trained with, the best checkpoint by valid
loss), `checkpoints/` (for `--resume`), `metrics.jsonl`, `loss.png`, `samples.md` (replies to valid contexts
before and after training beside the real ones) and `config.yaml` (every setting, resolved, with library
versions; `train --config RUN_DIR/config.yaml` repeats the run). Only the main process writes files.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.errors import ConfigError, DatasetError
from sobesednik.modeling.load import ADAPTER_DIR, load_base
from sobesednik.training.collate import PackedDataset, PadCollator
from sobesednik.training.dataset import ConversationDataset, data_file, read_jsonl
from sobesednik.training.lora import wrap_with_lora
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
    """`auto` → bf16 where the hardware multiplies it fast (CUDA bf16, CPU AMX), fp16 on older GPUs, else fp32."""
    import torch

    if torch.cuda.is_available():
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise ConfigError("--precision fp16 needs a CUDA GPU; on CPU use bf16 (fast with AMX) or fp32")
    if precision == "auto":
        return "bf16" if torch.cpu._is_amx_tile_supported() else "fp32"
    return precision


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
        seed=settings.seed,
        data_seed=settings.seed,
    )


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
                record = {"step": state.global_step, "epoch": state.epoch, **logs}
                with path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")

    return MetricsCallback()


def train(settings: TrainSettings) -> TrainResult:
    """Run the stage; returns where the adapter went and what it reached."""
    import torch
    import yaml
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    _check_run_dir(settings)
    precision = resolve_precision(settings.precision)
    set_seed(settings.seed)
    train_file, valid_file = data_file(settings.data, "train"), data_file(settings.data, "valid")
    model, tokenizer, added_ids = load_base(settings.base, load_in_4bit=settings.load_in_4bit)
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
    train_rows = PackedDataset(train_set.samples, settings.max_length, settings.seed) if settings.packing else train_set
    plan = plan_steps(settings, len(train_rows), _num_processes())
    settings = settings.model_copy(update={"max_steps": plan.max_steps, "eval_steps": plan.eval_steps})

    trainer = Trainer(
        model=model,
        args=_training_arguments(settings, precision),
        train_dataset=train_rows,
        eval_dataset=valid_set,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=[_metrics_callback(settings.out / "metrics.jsonl")]
        + ([EarlyStoppingCallback(early_stopping_patience=settings.patience)] if settings.patience else []),
    )
    # Without a progress bar (quiet logging: the demo, scripts) Trainer prints every log dict instead;
    # metrics.jsonl already holds them.
    trainer.remove_callback(PrinterCallback)
    main = trainer.is_world_process_zero()
    sample_contexts = [dialogue[:-1] for dialogue in valid_dialogues[: settings.samples]]
    if main:
        settings.out.mkdir(parents=True, exist_ok=True)
        resolved = settings.model_dump(mode="json", exclude={"resume"}) | {
            "precision_used": precision, "steps_reason": plan.reason, "added_tokens": added_ids,
            "train_samples": len(train_set),
            "dropped_too_long": train_set.dropped_too_long, "num_processes": trainer.accelerator.num_processes,
            "versions": _library_versions()}
        (settings.out / "config.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False),
                                                  encoding="utf-8")
    before = _replies(model, tokenizer, sample_contexts, settings.seed) if main and sample_contexts else []

    trainer.train(resume_from_checkpoint=True if settings.resume else None)

    adapter_dir = settings.out / ADAPTER_DIR
    if main:
        trainer.model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        plot_losses(settings.out / "metrics.jsonl", settings.out / "loss.png")
        if sample_contexts:
            after = _replies(trainer.model, tokenizer, sample_contexts, settings.seed)
            write_samples(settings.out / "samples.md", valid_dialogues[: settings.samples], before, after)
    trainer.accelerator.wait_for_everyone()
    state = trainer.accelerator.state
    return TrainResult(settings.out, adapter_dir, trainer.state.global_step, trainer.state.best_metric,
                       len(train_set), train_set.dropped_too_long, state.process_index, state.num_processes)


def _replies(model: Any, tokenizer: Any, contexts: list, seed: int) -> list[str]:
    from sobesednik.modeling.defaults import RECOMMENDED_GENERATION
    from sobesednik.training.metrics import generate_replies

    model.config.use_cache = True
    try:
        return generate_replies(model, tokenizer, contexts, int(RECOMMENDED_GENERATION["max_new_tokens"]), seed)
    finally:
        model.config.use_cache = False

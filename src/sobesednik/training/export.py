"""The `export` stage: merge a run's LoRA into its base and save a plain Hugging Face model dir.

    sobesednik export runs/me --out models/me

The result needs no sobesednik and no peft: safetensors weights, the tokenizer with the chat template (messages
→ the dialogue format ending with `@@ВТОРОЙ@@`), and a `generation_config.json` with the base model card's
sampling settings, eos = `@@ПЕРВЫЙ@@` and a pad token distinct from it. `transformers`, vLLM and TGI serve
it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sobesednik.errors import ConfigError
from sobesednik.modeling.load import load_run
from sobesednik.modeling.model_dir import save_model_dir
from sobesednik.training.settings import ExportSettings


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    parameters: int


def export(settings: ExportSettings) -> ExportResult:
    """Merge, then write model, tokenizer and generation config to `settings.out`."""
    import torch

    if settings.out.exists() and any(settings.out.iterdir()):
        raise ConfigError(f"{settings.out} exists and is not empty: choose another --out or remove it")
    model, tokenizer = load_run(settings.run_dir, merge=True)
    model = model.to(getattr(torch, settings.dtype))
    model.config.use_cache = True
    save_model_dir(model, tokenizer, settings.out)
    return ExportResult(settings.out, sum(parameter.numel() for parameter in model.parameters()))

"""The `export` stage: merge a run's LoRA into its base and save a plain Hugging Face model dir.

    sobesednik export runs/me --out models/me

The result needs no sobesednik and no peft: safetensors weights (also when the base shipped only a pickled
`pytorch_model.bin`), the tokenizer with the chat template of the format the run trained (messages → the
dialogue format ending with `@@ВТОРОЙ@@`, or the base's own template with `--format native`), and a
`generation_config.json` with the base model card's sampling settings, eos = the token that closes a reply
and a pad token distinct from it. `transformers`, vLLM and TGI serve it as is.

The tokenizer files load with older `transformers` too, such as the one vLLM pins: `tokenizer_config.json`
names `PreTrainedTokenizerFast` (a class every version has, where transformers 5 writes its own
`TokenizersBackend`) and carries the chat template itself as well as `chat_template.jinja` (older versions read
only the former, newer ones prefer the latter).
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
    # The tokenizer carries the format it was trained in (the dialogue template, or the base's native one).
    save_model_dir(model, tokenizer, settings.out, chat_template=False)
    return ExportResult(settings.out, sum(parameter.numel() for parameter in model.parameters()))


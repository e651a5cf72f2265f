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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.errors import ConfigError
from sobesednik.modeling.defaults import RECOMMENDED_GENERATION
from sobesednik.modeling.load import load_run
from sobesednik.training.settings import ExportSettings


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    parameters: int


def export(settings: ExportSettings) -> ExportResult:
    """Merge, then write model, tokenizer and generation config to `settings.out`."""
    import torch
    from transformers import GenerationConfig

    if settings.out.exists() and any(settings.out.iterdir()):
        raise ConfigError(f"{settings.out} exists and is not empty: choose another --out or remove it")
    model, tokenizer = load_run(settings.run_dir, merge=True)
    model = model.to(getattr(torch, settings.dtype))
    model.config.use_cache = True
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        **RECOMMENDED_GENERATION,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(settings.out, safe_serialization=True)
    save_portable_tokenizer(tokenizer, settings.out)
    return ExportResult(settings.out, sum(parameter.numel() for parameter in model.parameters()))


def save_portable_tokenizer(tokenizer: Any, out: Path) -> None:
    """`tokenizer.save_pretrained(out)`, then its config made readable by every transformers version."""
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = tokenizer.chat_template
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

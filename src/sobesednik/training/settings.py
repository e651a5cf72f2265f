"""Settings of the model-building stages: `tiny-model`, `train`, `evaluate`, `export`.

Each field is a CLI flag (`--max-length`), an environment variable (`SOBESEDNIK_TRAIN_MAX_LENGTH`) and a key
of the YAML file that `train --config` reads; flags win over the file, the file over the environment.
Defaults marked "measured" come from `bench/train.py` (see docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sobesednik.errors import ConfigError
from sobesednik.modeling.defaults import DEFAULT_BASE_MODEL, RECOMMENDED_GENERATION

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _config(component: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"SOBESEDNIK_{component}_", env_file=".env", extra="ignore")


class TinyModelSettings(BaseSettings):
    """`sobesednik tiny-model`: the offline stand-in base built from a prepared dataset's text."""

    model_config = _config("TINY")

    data: Path = Path("data")  # a `prepare --out` dir; the tokenizer and pretraining read its train.jsonl
    out: Path = Path("models/tiny")  # the model dir that `train --base` takes
    pretrain_steps: int = Field(300, ge=0)  # plain-LM steps on the text, so LoRA has something to adapt
    arch: Literal["gpt2", "llama", "qwen2"] = Field(
        "gpt2", description="architecture of the tiny base: gpt2 (like ruDialoGPT, with the role tokens), llama "
        "(SentencePiece-style byte-fallback tokenizer, Llama 3 chat template, untied head) or qwen2 (ChatML)")
    vocab_size: int = Field(2000, ge=300)  # BPE merges + bytes + special tokens
    seed: int = 0  # seeds the tokenizer-independent init and the pretraining order


class TrainSettings(BaseSettings):
    """`sobesednik train`: LoRA fine-tuning of a base model on a prepared dataset."""

    model_config = _config("TRAIN")

    data: Path = Path("data")  # a `prepare --out` dir with train.jsonl and valid.jsonl
    base: str = DEFAULT_BASE_MODEL  # Hub id or local model dir
    out: Path = Path("runs/sobesednik")  # run dir: adapter, checkpoints, metrics, loss.png, samples.md
    max_length: int = Field(256, ge=8)  # tokens per sample; oldest context turns are dropped to fit
    epochs: float = Field(3.0, gt=0)  # passes over train.jsonl; early stopping usually ends sooner
    max_steps: int = Field(-1, ge=-1)  # optimizer steps; > 0 overrides --epochs
    # optimizer steps at least, unless --epochs or --max-steps is given (recipe.py); measured: 3 epochs of a
    # 1.5k-message chat are 21 steps, 17 % of replies in the speaker's style; 300 steps: 70 % at 2e-4
    min_steps: int = Field(300, ge=0)
    batch_size: int = Field(8, ge=1)  # per process: samples, or packed rows of --max-length tokens
    gradient_accumulation_steps: int = Field(1, ge=1)  # batches per step: a larger batch, same memory
    # measured (bench/persona.py, tiny base, 1.5k-message chat): 2e-3 → 83 % of replies in the speaker's style,
    # 1e-3 → 77 %, 2e-4 → 70 %; ruDialoGPT-medium is unmeasured here: try 2e-4 if its valid loss diverges
    learning_rate: float = Field(2e-3, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)  # share of steps with linear warmup before the cosine decay
    weight_decay: float = Field(0.0, ge=0)  # LoRA's few parameters rarely need it
    lora_r: int = Field(8, ge=1)  # LoRA rank: 8 learns a chat's style; more rarely helps on small chats
    lora_alpha: int = Field(16, ge=1)  # scale alpha/r = 2, peft's common choice
    lora_dropout: float = Field(0.05, ge=0, lt=1)  # dropout on the LoRA input, against overfitting small chats
    lora_target_modules: list[str] | None = Field(
        None, description="modules to adapt; empty: the base's layout decides (GPT-2: c_attn, c_proj; Llama, "
        "Qwen, Mistral, Gemma: q/k/v/o_proj, gate/up/down_proj; docs/training.md says why)")
    format: Literal["dialogue", "native"] = Field(
        "dialogue", description="dialogue: the @@ПЕРВЫЙ@@/@@ВТОРОЙ@@ format of ruDialoGPT (role tokens added to "
        "bases that lack them); native: the chat template the base's tokenizer ships (ChatML, Llama 3), the "
        "persona being the assistant")
    packing: bool = True  # measured: concatenating samples (block-diagonal attention) beats length grouping
    gradient_checkpointing: bool = False  # measured: saves little memory for LoRA at these lengths, costs ~30%
    precision: Precision = "auto"  # auto: bf16 on GPUs and CPUs that support it (AMX / AVX512-BF16), else fp32
    eval_steps: int = Field(0, ge=0)  # evaluate every N steps; 0 = 10 times per run, whatever the epochs
    # evaluations without a better valid loss before stopping; 0 = never stop; measured: it ends a 1.5k-chat run
    # at 150 of 300 steps with 83 % of replies in the speaker's style, so it does not stop the persona
    patience: int = Field(3, ge=0)
    save_total_limit: int = Field(2, ge=1)  # checkpoints kept (the best one is always kept)
    logging_steps: int = Field(10, ge=1)  # log the train loss every N optimizer steps
    samples: int = Field(10, ge=0)  # valid contexts answered before/after training in samples.md
    resume: bool = False  # continue from the last checkpoint in --out
    load_in_4bit: bool = False  # QLoRA (bitsandbytes NF4); CUDA only
    seed: int = 42  # seeds weights of LoRA, shuffling and dropout: the same seed gives the same run
    # valid contexts answered to measure persona fidelity before, at each evaluation and after training
    # (fidelity.json, metrics.jsonl, loss.png; docs/fidelity.md); measured: 32 tiny-model replies take 0.6 s; 0 = off
    fidelity_samples: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError("lora_target_modules is empty: name at least one module, e.g. c_attn")
        return self


class EvaluateSettings(BaseSettings):
    """`sobesednik evaluate`: reply loss/perplexity, style statistics and persona fidelity of sampled replies."""

    model_config = _config("EVAL")

    model: str = "runs/sobesednik"  # a RUN_DIR (base + adapter), a MODEL_DIR or a Hub id
    data: Path = Path("data/test.jsonl")  # a JSONL file of the prepare contract
    base: str | None = None  # the base for --compare-base when --model is a MODEL_DIR (a RUN_DIR knows its own)
    compare_base: bool = False  # also evaluate the base model and show it beside
    max_length: int = Field(256, ge=8)  # tokens, as in training
    batch_size: int = Field(8, ge=1)  # samples per forward pass
    samples: int = Field(50, ge=0)  # contexts to generate replies for (style statistics and fidelity)
    max_new_tokens: int = Field(int(RECOMMENDED_GENERATION["max_new_tokens"]), ge=1)  # the model card's value
    out: Path | None = None  # also write the JSON report here
    seed: int = 42  # sampling seed: the same seed gives the same replies


class ExportSettings(BaseSettings):
    """`sobesednik export`: merge a run's LoRA into its base and save a plain HF model dir."""

    model_config = _config("EXPORT")

    run_dir: Path = Path("runs/sobesednik")  # the `train --out` dir to merge
    out: Path = Path("models/sobesednik")  # the merged model dir, servable by `sobesednik serve`, vLLM or TGI
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # CPU serving wants float32


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys of a YAML config file (`train --config`), with CLI-style dashes allowed in names."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass a YAML file such as a run's config.yaml")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}".splitlines()[0]) from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value, found {type(values).__name__}")
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def with_config_file(config: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The values of `config` (if given) overridden by the flags that were given (not None)."""
    given = {name: value for name, value in flags.items() if value is not None}
    return (read_config_file(config) if config else {}) | given

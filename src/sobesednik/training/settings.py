"""Settings of the model-building stages: `tiny-model`, `train`, `evaluate`, `export`.

Each field is a CLI flag (`--max-length`), an environment variable (`SOBESEDNIK_TRAIN_MAX_LENGTH`) and a key
of the YAML file that `train --config` reads; flags win over the file, the file over the environment.
Defaults marked "measured" come from `bench/train.py` (see docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sobesednik.errors import ConfigError
from sobesednik.flags import Positional
from sobesednik.modeling.defaults import DEFAULT_BASE_MODEL, RECOMMENDED_GENERATION

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _config(component: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"SOBESEDNIK_{component}_", env_file=".env", extra="ignore")


class TinyModelSettings(BaseSettings):
    """`sobesednik tiny-model`: the offline stand-in base built from a prepared dataset's text."""

    model_config = _config("TINY")

    data: Path = Field(Path("data"),
                       description="a `prepare --out` dir; the tokenizer and pretraining read its train.jsonl")
    out: Path = Field(Path("models/tiny"), description="the model dir that `train --base` takes")
    pretrain_steps: int = Field(300, ge=0, description="plain-LM steps on the text, so LoRA has something to adapt")
    arch: Literal["gpt2", "llama", "qwen2"] = Field(
        "gpt2", description="architecture of the tiny base: gpt2 (like ruDialoGPT, with the role tokens), llama "
        "(SentencePiece-style byte-fallback tokenizer, Llama 3 chat template, untied head) or qwen2 (ChatML)")
    vocab_size: int = Field(2000, ge=300, description="BPE merges + bytes + special tokens")
    seed: int = Field(0, description="seeds the tokenizer-independent init and the pretraining order")


class TrainSettings(BaseSettings):
    """`sobesednik train`: LoRA fine-tuning of a base model on a prepared dataset."""

    model_config = _config("TRAIN")

    data: Path = Field(Path("data"), description="a `prepare --out` dir with train.jsonl and valid.jsonl")
    base: str = Field(DEFAULT_BASE_MODEL, description="Hub id or local model dir")
    out: Path = Field(Path("runs/sobesednik"),
                      description="run dir: adapter, checkpoints, metrics, loss.png, samples.md")
    max_length: int = Field(256, ge=8, description="tokens per sample; oldest context turns are dropped to fit")
    epochs: float = Field(3.0, gt=0, description="passes over train.jsonl; early stopping usually ends sooner")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps; > 0 overrides --epochs")
    min_steps: int = Field(300, ge=0, description=(
        "optimizer steps at least, unless --epochs or --max-steps is given (recipe.py); measured: 3 epochs of a "
        "1.5k-message chat are 21 steps, 17 % of replies in the speaker's style; 300 steps: 70 % at 2e-4"))
    batch_size: int = Field(8, ge=1, description="per process: samples, or packed rows of --max-length tokens")
    gradient_accumulation_steps: int = Field(1, ge=1, description="batches per step: a larger batch, same memory")
    learning_rate: float = Field(2e-3, gt=0, description=(
        "peak learning rate of the cosine schedule; measured (bench/persona.py, tiny base, 1.5k-message chat): 2e-3 → "
        "83 % of replies in the speaker's style, 1e-3 → 77 %, 2e-4 → 70 %; ruDialoGPT-medium is unmeasured here: try "
        "2e-4 if its valid loss diverges"))
    warmup_ratio: float = Field(0.05, ge=0, lt=1,
                                description="share of steps with linear warmup before the cosine decay")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay; LoRA's few parameters rarely need it")
    lora_r: int = Field(8, ge=1, description="LoRA rank: 8 learns a chat's style; more rarely helps on small chats")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha: scale alpha/r = 2, peft's common choice")
    lora_dropout: float = Field(0.05, ge=0, lt=1,
                                description="dropout on the LoRA input, against overfitting small chats")
    lora_target_modules: list[str] | None = Field(None, description=(
        "modules to adapt (repeat the flag for several); empty: the base's layout decides (GPT-2: c_attn, c_proj; "
        "Llama, Qwen, Mistral, Gemma: q/k/v/o_proj, gate/up/down_proj; docs/training.md says why)"))
    format: Literal["dialogue", "native"] = Field("dialogue", description=(
        "dialogue: the @@ПЕРВЫЙ@@/@@ВТОРОЙ@@ format of ruDialoGPT (role tokens added to bases that lack them); "
        "native: the chat template the base's tokenizer ships (ChatML, Llama 3), the persona being the assistant"))
    packing: bool = Field(True, description=(
        "pack samples into rows of --max-length tokens, else group them by length; measured: concatenating samples "
        "(block-diagonal attention) beats length grouping"))
    gradient_checkpointing: bool = Field(False, description=(
        "recompute activations to save memory; measured: saves little memory for LoRA at these lengths, costs ~30%"))
    precision: Precision = Field("auto", description=(
        "auto: bf16 on GPUs and CPUs that compute it natively (AMX / AVX512-BF16 / ARM BF16), else fp32 "
        "(fp16 on GPUs without bf16)"))
    eval_steps: int = Field(0, ge=0, description="evaluate every N steps; 0 = 10 times per run, whatever the epochs")
    patience: int = Field(3, ge=0, description=(
        "evaluations without a better valid loss before stopping; 0 = never stop; measured: it ends a 1.5k-chat run "
        "at 150 of 300 steps with 83 % of replies in the speaker's style, so it does not stop the persona"))
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept (the best one is always kept)")
    logging_steps: int = Field(10, ge=1, description="log the train loss every N optimizer steps")
    samples: int = Field(10, ge=0, description="valid contexts answered before/after training in samples.md")
    resume: bool = Field(False, description="continue from the last checkpoint in --out")
    progress: bool = Field(True, description="a progress bar on stderr: steps, time left, the latest losses")
    load_in_4bit: bool = Field(False, description="QLoRA (bitsandbytes NF4); CUDA only")
    seed: int = Field(42, description="seeds weights of LoRA, shuffling and dropout: the same seed gives the same run")
    fidelity_samples: int = Field(32, ge=0, description=(
        "valid contexts answered to measure persona fidelity before, at each evaluation and after training "
        "(fidelity.json, metrics.jsonl, loss.png; docs/fidelity.md); measured: 32 tiny-model replies take 0.6 s; 0 = "
        "off"))

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError("lora_target_modules is empty: name at least one module, e.g. c_attn")
        return self


class EvaluateSettings(BaseSettings):
    """`sobesednik evaluate`: reply loss/perplexity, style statistics and persona fidelity of sampled replies."""

    model_config = _config("EVAL")

    model: str = Field("runs/sobesednik", description="a RUN_DIR (base + adapter), a MODEL_DIR or a Hub id")
    data: Path = Field(Path("data/test.jsonl"), description="a JSONL file of the prepare contract")
    base: str | None = Field(None, description=(
        "the base for --compare-base when --model is a MODEL_DIR (a RUN_DIR knows its own)"))
    compare_base: bool = Field(False, description="also evaluate the base model and show it beside")
    max_length: int | None = Field(None, ge=8, description=(
        "tokens per sample; default: the RUN_DIR's own (its config.yaml), else train's default"))
    batch_size: int = Field(8, ge=1, description="samples per forward pass")
    samples: int = Field(50, ge=0, description="contexts to generate replies for (style statistics and fidelity)")
    max_new_tokens: int = Field(int(RECOMMENDED_GENERATION["max_new_tokens"]), ge=1,
                                description="the model card's value")
    out: Path | None = Field(None, description="also write the JSON report here")
    seed: int = Field(42, description="sampling seed: the same seed gives the same replies")


class ExportSettings(BaseSettings):
    """`sobesednik export`: merge a run's LoRA into its base and save a plain HF model dir."""

    model_config = _config("EXPORT")

    run_dir: Annotated[Path, Positional()] = Field(Path("runs/sobesednik"),
                                                   description="the `train --out` dir to merge")
    out: Path = Field(Path("models/sobesednik"),
                      description="the merged model dir, servable by `sobesednik serve`, vLLM or TGI")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description=(
        "dtype of the merged weights; CPU serving wants float32"))


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


def run_config(run_dir: Path) -> dict[str, Any]:
    """The training settings a run was made with (its `config.yaml`), or {} where there is none (a MODEL_DIR)."""
    path = run_dir / "config.yaml"
    return read_config_file(path) if path.is_file() else {}


def evaluation_max_length(settings: EvaluateSettings) -> int:
    """`--max-length` when given, else the run's own, else train's default: a run is scored on what it saw."""
    if settings.max_length is not None:
        return settings.max_length
    trained = run_config(Path(settings.model)).get("max_length")
    return int(trained) if trained is not None else int(TrainSettings.model_fields["max_length"].default)

"""What a dialogue model carries beyond its weights, written and read in one place.

A model dir that `tiny-model` or `export` writes (and a base that `load_base` prepares) carries: the chat
template (messages → the dialogue format), eos = the closing token `@@ПЕРВЫЙ@@` and a distinct pad token in both
the model config and the generation config, and the base model card's sampling settings as the generation
config; the service reads its sampling defaults back from there (`sampling_defaults`).

    save_model_dir(model, tokenizer, Path("models/me"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sobesednik.modeling.chat_template import CHAT_TEMPLATE
from sobesednik.modeling.defaults import RECOMMENDED_GENERATION

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase


def set_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    tokenizer.chat_template = CHAT_TEMPLATE


def set_special_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """eos and pad of `tokenizer` in the model's config and generation config (a base keeps its other settings)."""
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id


def recommended_generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """The model card's sampling settings with `tokenizer`'s special ids: what every written model dir carries."""
    from transformers import GenerationConfig

    return GenerationConfig(**RECOMMENDED_GENERATION, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path, *,
                   chat_template: bool = True) -> Path:
    """Write `model` and `tokenizer` as a dialogue model dir: special ids, generation config and (unless
    `chat_template` is False: a generic base that tests use, without role tokens) the chat template."""
    model.generation_config = recommended_generation_config(tokenizer)
    set_special_ids(model, tokenizer)
    if chat_template:
        set_chat_template(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def sampling_defaults(config: Any) -> dict[str, Any]:
    """The sampling settings a `GenerationConfig` gives a request; a value it lacks is the one that turns its
    step off (`do_sample=False` means greedy), and a missing length is the model card's."""
    return {
        "max_new_tokens": int(config.max_new_tokens or RECOMMENDED_GENERATION["max_new_tokens"]),
        "temperature": float(config.temperature or 1.0) if config.do_sample else 0.0,
        "top_k": int(config.top_k or 0),
        "top_p": float(config.top_p if config.top_p is not None else 1.0),
        "repetition_penalty": float(config.repetition_penalty or 1.0),
        "no_repeat_ngram_size": int(config.no_repeat_ngram_size or 0),
    }

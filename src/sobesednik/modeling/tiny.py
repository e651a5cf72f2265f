"""Tiny causal LMs and their tokenizers, built offline from sample text: the stand-in bases for tests and the demo.

Model weights cannot be downloaded here, so tests and `make demo` train on models the project builds itself, one
per architecture family a user may pick as a base (`tiny-model --arch`):

- `gpt2`: like `tinkoff-ai/ruDialoGPT-medium`: byte-level BPE, the role tokens in the vocabulary, EOS
  `@@ПЕРВЫЙ@@`, the dialogue-format chat template, the LM head tied to the input embedding.
- `qwen2`: like Qwen2.5-0.5B-Instruct: byte-level BPE, ChatML (`<|im_start|>` … `<|im_end|>`), EOS `<|im_end|>`,
  tied head, grouped-query attention.
- `llama`: like Llama 3 / Mistral / Gemma: a SentencePiece-style BPE (`▁` for spaces, bytes as `<0xNN>` pieces for
  characters outside its alphabet, e.g. emoji), the Llama 3 chat template, EOS `<|eot_id|>`, an untied LM head.

`qwen2` and `llama` lack the role tokens, as the real bases do: `train` adds them (the dialogue format) or keeps
the base's own template (`--format native`). Each is saved as a normal Hugging Face model dir, so every stage
loads it exactly like a Hub model.

    build_tiny_model(texts, Path("models/tiny"), TinyModelConfig(arch="llama"))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
from sobesednik.modeling.model_dir import save_model_dir

Arch = Literal["gpt2", "llama", "qwen2"]
ARCHS: tuple[Arch, ...] = ("gpt2", "llama", "qwen2")

PAD_TOKEN = "<pad>"
# GPT-2's own special token; unknown bytes cannot occur with a byte-level vocabulary, so it is only a BOS.
BOS_TOKEN = "<|endoftext|>"

# The native chat templates of the real bases, reduced to what a dialogue needs (no system-prompt defaults).
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class _Family:
    """The special tokens and chat template of one architecture family's tokenizer."""

    bos: str
    eos: str
    pad: str | None
    specials: tuple[str, ...]
    chat_template: str | None


_FAMILIES: dict[str, _Family] = {
    "qwen2": _Family(bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>",
                     specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), chat_template=CHATML_TEMPLATE),
    # Llama 3 has no pad token; loading picks one that is not the EOS.
    "llama": _Family(bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None,
                     specials=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                     chat_template=LLAMA3_TEMPLATE),
}


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the stand-in model: small enough to train in seconds on 2 CPU cores."""

    arch: Arch = "gpt2"
    vocab_size: int = 2000
    n_positions: int = 256  # tokens; the dataset's --max-length must not exceed it
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    seed: int = 0
    # gpt2 only: False builds a base that lacks the role strings, like a generic GPT-2: training must add them.
    with_role_tokens: bool = True
    # llama only: characters kept as single pieces; rarer ones (emoji) are spelled as <0xNN> byte pieces.
    alphabet_size: int = 150


def _byte_level_tokenizer(texts: Iterable[str], vocab_size: int, specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


def _sentencepiece_tokenizer(texts: Iterable[str], config: TinyModelConfig, specials: list[str]) -> Any:
    """A Llama-2/Mistral-style BPE: `▁` marks spaces (prepended to the text's start only), byte fallback."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    def metaspace() -> Any:
        return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)

    trainer_backend = Tokenizer(models.BPE())
    trainer_backend.pre_tokenizer = metaspace()
    trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=specials,
                                  limit_alphabet=config.alphabet_size, show_progress=False)
    trainer_backend.train_from_iterator(texts, trainer=trainer)
    # SentencePiece's byte pieces <0x00>…<0xFF> are ordinary vocabulary entries: append them after training.
    model = trainer_backend.get_vocab()
    for byte in range(256):
        model.setdefault(f"<0x{byte:02X}>", len(model))
    merges = [tuple(merge.split(" ", 1)) for merge in _merges(trainer_backend)]
    backend = Tokenizer(models.BPE(vocab=model, merges=merges, byte_fallback=True, fuse_unk=True))
    backend.pre_tokenizer = metaspace()
    # Llama 2's decoder: `▁` back to spaces, byte pieces back to characters, the prepended space dropped.
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return backend


def _merges(backend: Any) -> list[str]:
    import json

    merges = json.loads(backend.to_str())["model"]["merges"]
    return [" ".join(merge) if isinstance(merge, list) else merge for merge in merges]


def train_tokenizer(texts: Iterable[str], config: TinyModelConfig) -> Any:
    """A `PreTrainedTokenizerFast` of `config.arch`'s kind trained on `texts`, with its chat template set."""
    from transformers import PreTrainedTokenizerFast

    if config.arch == "gpt2":
        specials = [BOS_TOKEN, PAD_TOKEN] + ([USER_TOKEN, ASSISTANT_TOKEN] if config.with_role_tokens else [])
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=_byte_level_tokenizer(texts, config.vocab_size, specials),
            bos_token=BOS_TOKEN, unk_token=BOS_TOKEN, pad_token=PAD_TOKEN,
            eos_token=USER_TOKEN if config.with_role_tokens else BOS_TOKEN, clean_up_tokenization_spaces=False)
        return tokenizer
    family = _FAMILIES[config.arch]
    specials = list(family.specials)
    if config.arch == "qwen2":
        backend = _byte_level_tokenizer(texts, config.vocab_size, specials)
        unk = None
    else:
        backend = _sentencepiece_tokenizer(texts, config, ["<unk>", *specials])
        unk = "<unk>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=family.bos, eos_token=family.eos,
                                        pad_token=family.pad, unk_token=unk, clean_up_tokenization_spaces=False)
    tokenizer.chat_template = family.chat_template
    return tokenizer


def _model_config(config: TinyModelConfig, tokenizer: Any) -> Any:
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if config.arch == "gpt2":
        return GPT2Config(n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
                          n_head=config.n_head, **ids)
    sizes = {"hidden_size": config.n_embd, "intermediate_size": 2 * config.n_embd,
             "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
             "num_key_value_heads": 1, "max_position_embeddings": config.n_positions}
    if config.arch == "qwen2":
        return Qwen2Config(tie_word_embeddings=True, **sizes, **ids)
    return LlamaConfig(tie_word_embeddings=False, **sizes, **ids)


def build_tiny_model(texts: Iterable[str], out_dir: Path, config: TinyModelConfig | None = None) -> Path:
    """Train a tokenizer on `texts`, initialise a small model of `config.arch` for it, save both to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    config = config or TinyModelConfig()
    tokenizer = train_tokenizer(list(texts), config)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_config(_model_config(config, tokenizer))
    # A native base keeps its family's template; the dialogue template goes only onto a base with role tokens.
    return save_model_dir(model, tokenizer, out_dir, chat_template=config.arch == "gpt2" and config.with_role_tokens)

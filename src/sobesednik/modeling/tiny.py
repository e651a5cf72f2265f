"""A tiny GPT-2 and its tokenizer, built offline from sample text: the stand-in base for tests and the demo.

Model weights cannot be downloaded here, so tests and `make demo` train on a model the project builds itself:
a byte-level BPE tokenizer trained with `tokenizers` on the dialogues' text, carrying the role tokens and a
pad token, and a small randomly initialised GPT-2. It is saved as a normal Hugging Face model dir, so every
stage loads it exactly like `tinkoff-ai/ruDialoGPT-medium`; like that model, its EOS is `@@ПЕРВЫЙ@@`.

    build_tiny_model(texts, Path("models/tiny"))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
from sobesednik.modeling.model_dir import save_model_dir

PAD_TOKEN = "<pad>"
# GPT-2's own special token; unknown bytes cannot occur with a byte-level vocabulary, so it is only a BOS.
BOS_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the stand-in model: small enough to train in seconds on 2 CPU cores."""

    vocab_size: int = 2000
    n_positions: int = 256  # tokens; the dataset's --max-length must not exceed it
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    seed: int = 0
    # False builds a base that lacks the role strings, like a generic GPT-2: training must add them.
    with_role_tokens: bool = True


def train_tokenizer(texts: Iterable[str], config: TinyModelConfig):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, with the chat template set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special_tokens = [BOS_TOKEN, PAD_TOKEN]
    if config.with_role_tokens:
        special_tokens += [USER_TOKEN, ASSISTANT_TOKEN]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        unk_token=BOS_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=USER_TOKEN if config.with_role_tokens else BOS_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def build_tiny_model(texts: Iterable[str], out_dir: Path, config: TinyModelConfig | None = None) -> Path:
    """Train a tokenizer on `texts`, initialise a small GPT-2 for it and save both to `out_dir`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = config or TinyModelConfig()
    tokenizer = train_tokenizer(texts, config)
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    return save_model_dir(GPT2LMHeadModel(model_config), tokenizer, out_dir, chat_template=config.with_role_tokens)

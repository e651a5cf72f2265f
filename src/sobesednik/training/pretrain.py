"""The `tiny-model` stage: a tiny offline base built from a prepared dataset, optionally pretrained on its text.

A randomly initialised model gives LoRA nothing to adapt, so `--pretrain-steps N` first trains the whole tiny
model as a plain language model on the training dialogues rendered in its tokenizer's format (the dialogue
format for `gpt2`, the native chat template for `llama` and `qwen2`; full fine-tuning, every token a target).
The result plays the part ruDialoGPT plays in real use: a base that already speaks, which
`train --base MODEL_DIR` then adapts with LoRA.

    sobesednik tiny-model --data data --out models/tiny --pretrain-steps 300 [--arch llama]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sobesednik.dialogue import Message, data_file, read_jsonl
from sobesednik.modeling.formats import ChatFormat, chat_format
from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model
from sobesednik.training.settings import TinyModelSettings

BLOCK = 128  # tokens per pretraining row
BATCH = 16  # rows per step
LEARNING_RATE = 3e-3  # tiny models take large steps; AdamW with cosine decay to 10%


@dataclass(frozen=True)
class TinyModelResult:
    model_dir: Path
    pretrain_steps: int
    final_loss: float | None


def dialogue_text(messages: Sequence[Message], chat: ChatFormat) -> str:
    """A whole dialogue as the model sees it in training, closing token included."""
    return "".join(chat.texts(messages[:-1], messages[-1]["content"]))


def pretrain(model_dir: Path, dialogues: Sequence[Sequence[Message]], steps: int, seed: int) -> float:
    """Train the model in `model_dir` as a plain LM on `dialogues` for `steps` steps, save it; return the last loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    chat = chat_format(tokenizer)
    texts = [dialogue_text(messages, chat) for messages in dialogues]
    stream = [token for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for token in ids]
    block = min(BLOCK, model.config.max_position_embeddings)
    rows = [stream[i:i + block] for i in range(0, len(stream) - block + 1, block // 2)]  # half-overlapping
    if not rows:
        rows = [stream]
    generator = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=LEARNING_RATE / 10)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = torch.tensor(generator.choices(rows, k=BATCH) if len(rows) > 1 else rows * BATCH)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    model.save_pretrained(model_dir)
    return loss.item()


def build_tiny_base(settings: TinyModelSettings) -> TinyModelResult:
    """Tokenizer and tiny model from the dataset's train split, then `pretrain_steps` of plain LM training."""
    dialogues = read_jsonl(data_file(settings.data, "train"))
    config = TinyModelConfig(arch=settings.arch, vocab_size=settings.vocab_size, seed=settings.seed)
    build_tiny_model([message["content"] for messages in dialogues for message in messages], settings.out, config)
    steps = settings.pretrain_steps
    loss = pretrain(settings.out, dialogues, steps, settings.seed) if steps else None
    return TinyModelResult(settings.out, settings.pretrain_steps, loss)

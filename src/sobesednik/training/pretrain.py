"""The `tiny-model` stage: a tiny offline base built from a prepared dataset, optionally pretrained on its text.

A randomly initialised model gives LoRA nothing to adapt, so `--pretrain-steps N` first trains the whole tiny
model as a plain language model on the training dialogues rendered in the dialogue format (full fine-tuning,
every token a target). The result plays the part ruDialoGPT plays in real use: a base that already speaks,
which `train --base MODEL_DIR` then adapts with LoRA.

    sobesednik tiny-model --data data --out models/tiny --pretrain-steps 300
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sobesednik.dialogue import Message, data_file, read_jsonl, render, render_reply
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


def dialogue_text(messages: Sequence[Message]) -> str:
    """A whole dialogue as the model sees it in training, closing token included."""
    return render(messages[:-1], add_generation_prompt=True) + render_reply(messages[-1]["content"])


def pretrain(model_dir: Path, texts: Sequence[str], steps: int, seed: int) -> float:
    """Train the model in `model_dir` as a plain LM on `texts` for `steps` steps, save it; return the last loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    stream = [token for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for token in ids]
    block = min(BLOCK, model.config.n_positions)
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
    """Tokenizer and tiny GPT-2 from the dataset's train split, then `pretrain_steps` of plain LM training."""
    dialogues = read_jsonl(data_file(settings.data, "train"))
    texts = [dialogue_text(messages) for messages in dialogues]
    config = TinyModelConfig(vocab_size=settings.vocab_size, seed=settings.seed)
    build_tiny_model([message["content"] for messages in dialogues for message in messages], settings.out, config)
    loss = pretrain(settings.out, texts, settings.pretrain_steps, settings.seed) if settings.pretrain_steps else None
    return TinyModelResult(settings.out, settings.pretrain_steps, loss)

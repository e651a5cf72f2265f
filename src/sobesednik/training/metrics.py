"""What `train` and `evaluate` measure: reply loss, sampled replies, and the style of a set of replies.

The loss is averaged over reply tokens (the labelled ones), not over batches, so perplexity means the same
thing for any batch size. Replies are sampled with the model's generation config (the base model card's
recommended settings) and cut at the closing `@@ПЕРВЫЙ@@`.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from typing import Any

from sobesednik.dialogue import Message, render
from sobesednik.training.collate import PadCollator
from sobesednik.training.dataset import IGNORE_INDEX, ConversationDataset

_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\U0001f1e6-\U0001f1ff]")
_PUNCTUATION = re.compile(r"[.,!?;:…()\"«»-]")


def reply_loss(model: Any, dataset: ConversationDataset, pad_token_id: int, batch_size: int = 8) -> dict[str, float]:
    """Mean cross-entropy per reply token over `dataset`, and its perplexity."""
    import torch

    collate = PadCollator(pad_token_id)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits[:, :-1].float()
            targets = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total += losses.item()
            count += int((targets != IGNORE_INDEX).sum().item())
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def generate_replies(
    model: Any, tokenizer: Any, contexts: Sequence[Sequence[Message]], max_new_tokens: int, seed: int
) -> list[str]:
    """One sampled reply per context, in the dialogue format, stopped at the closing token."""
    import torch

    torch.manual_seed(seed)
    model.eval()
    replies = []
    for context in contexts:
        prompt = render(context, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id)
        replies.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return replies


def _distinct(replies: Sequence[str], n: int) -> float:
    ngrams = [tuple(words[i:i + n]) for words in (r.split() for r in replies) for i in range(len(words) - n + 1)]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def style_stats(replies: Sequence[str]) -> dict[str, float]:
    """Length and style figures of a set of replies (model's or real), comparable side by side."""
    lengths = [len(reply.split()) for reply in replies] or [0]
    letters = [reply for reply in replies if any(ch.isalpha() for ch in reply)]
    chars = sum(len(reply) for reply in replies) or 1
    return {
        "replies": len(replies),
        "mean_words": statistics.fmean(lengths),
        "median_words": statistics.median(lengths),
        "p90_words": sorted(lengths)[int(0.9 * (len(lengths) - 1))],
        "empty_rate": sum(not reply.strip() for reply in replies) / max(len(replies), 1),
        "distinct_1": _distinct(replies, 1),
        "distinct_2": _distinct(replies, 2),
        "emoji_per_reply": sum(len(_EMOJI.findall(reply)) for reply in replies) / max(len(replies), 1),
        "punctuation_per_100_chars": 100 * sum(len(_PUNCTUATION.findall(reply)) for reply in replies) / chars,
        "lowercase_start_rate": sum(r.lstrip()[0].islower() for r in letters if r.lstrip()) / max(len(letters), 1),
    }

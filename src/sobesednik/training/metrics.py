"""What `train` and `evaluate` measure: reply loss, sampled replies, and the style of a set of replies.

The loss is averaged over reply tokens (the labelled ones), not over batches, so perplexity means the same
thing for any batch size. Replies are sampled by the service's `Generator` with the model's generation config
(the base model card's recommended settings), so a reported reply is what `serve` would answer.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sobesednik.dialogue import Message
from sobesednik.training.collate import PadCollator
from sobesednik.training.dataset import IGNORE_INDEX, ConversationDataset

if TYPE_CHECKING:
    from sobesednik.inference.generator import Generated, Generator

EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\U0001f1e6-\U0001f1ff]")
PUNCTUATION = re.compile(r"[.,!?;:…()\"«»-]")


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


def sample_replies(generator: Generator, contexts: Sequence[Sequence[Message]], *, seed: int,
                   max_new_tokens: int | None = None, batch_size: int = 16) -> list[Generated]:
    """One reply per context from the service's own decoder: its prompt fitting, sampling, stopping and cleaning.

    Context i is sampled with seed `seed + i`, so a reply does not depend on the batch it was decoded in and
    the model before and after training answers each context with the same random stream.
    """
    from sobesednik.inference.generator import Row

    params = generator.defaults.with_overrides(max_new_tokens=max_new_tokens)
    requests = [Row(generator.chat_prompt(context, params.max_new_tokens), params.with_overrides(seed=seed + i))
                for i, context in enumerate(contexts)]
    training = generator.model.training
    generator.model.eval()  # no LoRA dropout while sampling, also in the middle of training
    try:
        return [completion for start in range(0, len(requests), batch_size)
                for completion in generator.generate(requests[start:start + batch_size])]
    finally:
        generator.model.train(training)


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
        "emoji_per_reply": sum(len(EMOJI.findall(reply)) for reply in replies) / max(len(replies), 1),
        "punctuation_per_100_chars": 100 * sum(len(PUNCTUATION.findall(reply)) for reply in replies) / chars,
        "lowercase_start_rate": sum(r.lstrip()[0].islower() for r in letters if r.lstrip()) / max(len(letters), 1),
    }

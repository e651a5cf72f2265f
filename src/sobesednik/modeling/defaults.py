"""Facts about the default base model, `tinkoff-ai/ruDialoGPT-medium`, that every stage honours."""

from __future__ import annotations

DEFAULT_BASE_MODEL = "tinkoff-ai/ruDialoGPT-medium"

# One model under several Hub names: Tinkoff became T-Bank and republished its models as t-bank-ai/…; the old
# name is the one in the model card and older caches, so both load, whichever a user's cache or Hub holds.
HUB_ALIASES: tuple[tuple[str, ...], ...] = (
    ("tinkoff-ai/ruDialoGPT-medium", "t-bank-ai/ruDialoGPT-medium"),
    ("tinkoff-ai/ruDialoGPT-small", "t-bank-ai/ruDialoGPT-small"),
)


def hub_names(hub_id: str) -> tuple[str, ...]:
    """`hub_id` first, then the other names of the same model."""
    for names in HUB_ALIASES:
        if hub_id in names:
            return (hub_id, *(name for name in names if name != hub_id))
    return (hub_id,)

# The model card's recommended sampling settings (https://huggingface.co/tinkoff-ai/ruDialoGPT-medium);
# they become the exported generation_config.json and so the service's defaults.
RECOMMENDED_GENERATION: dict[str, float | int | bool] = {
    "do_sample": True,
    "top_k": 10,
    "top_p": 0.95,
    "temperature": 1.2,
    "repetition_penalty": 1.2,
    "no_repeat_ngram_size": 2,
    "max_new_tokens": 40,
}

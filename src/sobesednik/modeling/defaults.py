"""Facts about the default base model, `tinkoff-ai/ruDialoGPT-medium`, that every stage honours."""

from __future__ import annotations

DEFAULT_BASE_MODEL = "tinkoff-ai/ruDialoGPT-medium"

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

"""The LoRA adapter for GPT-2-style bases (ruDialoGPT): which modules, and the rows of added tokens.

GPT-2 implements its projections as `Conv1D` (weight stored transposed), hence `fan_in_fan_out=True`.
When the base lacked the role tokens, `load_base` added them and resized the embeddings; their rows start
untrained, so they train with the adapter through peft's `trainable_token_indices` on the input embedding
(tied to the LM head in GPT-2). peft saves the full trained rows with the adapter, so base + adapter reproduces
the trained model exactly, whatever values the resized rows had before.

    model = wrap_with_lora(model, settings, added_token_ids)
"""

from __future__ import annotations

from typing import Any

from sobesednik.errors import ConfigError
from sobesednik.training.settings import TrainSettings


def lora_config(settings: TrainSettings, model: Any, added_token_ids: list[int]) -> Any:
    """The peft `LoraConfig` for `model`; refuses target modules the model does not have."""
    from peft import LoraConfig

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = sorted(set(settings.lora_target_modules) - names)
    if unknown:
        raise ConfigError(f"lora_target_modules {unknown} are not modules of this model; "
                          "GPT-2 bases have c_attn, c_proj, c_fc")
    embedding_name = _input_embedding_name(model)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        fan_in_fan_out=model.config.model_type == "gpt2",
        trainable_token_indices={embedding_name: list(added_token_ids)} if added_token_ids else None,
    )


def _input_embedding_name(model: Any) -> str:
    embedding = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is embedding).rsplit(".", 1)[-1]


def wrap_with_lora(model: Any, settings: TrainSettings, added_token_ids: list[int], frozen_dtype: Any = None) -> Any:
    """`model` as a peft model with only the LoRA weights (and added token rows) trainable.

    `frozen_dtype` (bf16 when training under bf16 autocast) stores the frozen base weights in that dtype:
    autocast computes in bf16 anyway, so an fp32 copy of weights that never change is only memory (measured:
    peak RSS 3.7 → 2.2 GB on ruDialoGPT-medium, and faster). The trainable weights stay fp32.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    if settings.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)
    elif settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    model = get_peft_model(model, lora_config(settings, model, added_token_ids))
    if frozen_dtype is not None:
        for parameter in model.parameters():
            if not parameter.requires_grad:
                parameter.data = parameter.data.to(frozen_dtype)
    return model

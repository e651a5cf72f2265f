"""The LoRA adapter: which modules of the base it adapts, and the rows of the tokens training added.

Target modules come from the base's own module names, so any model of a known layout works without a table of
model types (`lora_target_modules` overrides them):

- GPT-2 layout (ruDialoGPT, GPT-2): `c_attn`, `c_proj`; measured: learns as well as adding `c_fc`, at lower
  cost (docs/benchmarks.md).
- Llama layout (Llama, Qwen2/3, Mistral, Gemma, Vikhr, T-lite): `q_proj k_proj v_proj o_proj gate_proj up_proj
  down_proj`, every linear layer of a block: QLoRA (Dettmers et al. 2023, section 4) finds that adapting all of
  them is what matches full fine-tuning, attention alone falls short.

GPT-2 implements its projections as `Conv1D` (weight stored transposed), hence `fan_in_fan_out`. When the base lacked
the role tokens, `load_base` added them and resized the embeddings; their rows start untrained, so they train
with the adapter through peft's `trainable_token_indices`: on the input embedding, and on the output head too
when the head is not tied to it (Llama 3 8B, Qwen2.5-7B, Mistral), or the closing token's output row, the one
that makes a reply end, would never learn. Only those rows are saved (a few kB): `save_adapter` turns off peft's
habit of storing the whole resized embedding and head, and `modules_to_save` would store them too (vocabulary ×
hidden floats each, 2 GB for Llama 3 8B's pair in fp32). peft's trainable tokens hold the rows' values, not
deltas, so base + adapter reproduces the trained model exactly, whatever values the resized rows had before.

    model = wrap_with_lora(model, settings, added_token_ids)
"""

from __future__ import annotations

from typing import Any

from sobesednik.errors import ConfigError
from sobesednik.training.settings import TrainSettings

# (layout, modules): the first layout whose modules the base all has is its default.
LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GPT-2", ("c_attn", "c_proj")),
    ("Llama", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
)


def linear_modules(model: Any) -> list[str]:
    """The names (last part) of the model's linear layers LoRA can adapt; the output head is not one."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear | Conv1D) and module is not head})


def target_modules(settings: TrainSettings, model: Any) -> list[str]:
    """`settings.lora_target_modules`, or the default of the base's layout; refuses names the model lacks."""
    available = set(linear_modules(model))
    hint = (f"this model's linear modules are {', '.join(sorted(available))}: pass the ones to adapt with "
            "--lora-target-modules NAME (repeat the flag for several)")
    if settings.lora_target_modules:
        unknown = sorted(set(settings.lora_target_modules) - available)
        if unknown:
            raise ConfigError(f"lora_target_modules {unknown} are not linear modules of this model; {hint}")
        return list(settings.lora_target_modules)
    for _, modules in LAYOUTS:
        if available.issuperset(modules):
            return list(modules)
    known = "; ".join(f"{layout}: {', '.join(modules)}" for layout, modules in LAYOUTS)
    raise ConfigError(f"this base ({model.config.model_type}) has no known module layout ({known}); {hint}")


def lora_config(settings: TrainSettings, model: Any, added_token_ids: list[int]) -> Any:
    """The peft `LoraConfig` for `model`."""
    from peft import LoraConfig
    from transformers.pytorch_utils import Conv1D

    modules = target_modules(settings, model)
    conv1d = any(isinstance(module, Conv1D) and name.rsplit(".", 1)[-1] in modules
                 for name, module in model.named_modules())
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=modules,
        fan_in_fan_out=conv1d,
        trainable_token_indices=_token_rows(model, added_token_ids) if added_token_ids else None,
    )


def _module_name(model: Any, target: Any) -> str:
    return next(name for name, module in model.named_modules() if module is target).rsplit(".", 1)[-1]


def _token_rows(model: Any, added_token_ids: list[int]) -> dict[str, list[int]]:
    """The added tokens' rows on the input embedding, and on the output head when it is a separate matrix."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {_module_name(model, embedding): list(added_token_ids)}
    if head is not None and head.weight is not embedding.weight:  # tied heads share the embedding's rows
        rows[_module_name(model, head)] = list(added_token_ids)
    return rows


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


def save_adapter(model: Any, tokenizer: Any, adapter_dir: Any) -> None:
    """Save the adapter (LoRA weights and the added tokens' rows only) and the tokenizer it was trained with."""
    model.save_pretrained(adapter_dir, save_embedding_layers=False)
    tokenizer.save_pretrained(adapter_dir)

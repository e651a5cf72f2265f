"""Several LoRA adapters (personas) of one base in one model, decoded together in mixed batches.

`load_personas` loads the base once and every adapter beside it (`PeftModel.load_adapter`), so an adapter
costs only its own weights. Each row of a batch names its adapter (`BASE` for the base alone) and peft's
`adapter_names` routes every row through its own LoRA weights in the same forward pass.

The rows of the role tokens that training added (peft's `trainable_token_indices`) would, in peft's own
mixed-batch path, rebuild the whole vocab × width embedding (and the tied output head) once per adapter per
token: on the ruDialoGPT-medium shape that doubled a 16-row decoding step with 4 adapters (measured,
docs/benchmarks.md). `_TokenRows` computes the same numbers from the base layer and the few trained rows
instead: the embedding looks up the base and overwrites the added tokens' positions; the output head
multiplies by the base and by the trained rows, written into those tokens' logit columns. A module trained in
full (`modules_to_save`) keeps peft's own mixed-batch path.

    model, tokenizer = load_personas("models/base", {"anna": Path("runs/anna"), "boris": Path("runs/boris")})
    model(input_ids=ids, adapter_names=["anna", "boris", BASE])
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sobesednik.errors import ConfigError, ModelDirError

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in `adapter_names`
ADAPTER_CONFIG = "adapter_config.json"
# Config fields that fix the shape of what an adapter was trained on; a base whose values differ is not its base.
SHAPE_FIELDS = ("model_type", "vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
                "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size", "n_inner",
                "tie_word_embeddings")


def parse_adapters(specs: list[str]) -> dict[str, Path]:
    """`NAME=DIR` strings as {name: dir}; refuses a spec without a name and a name given twice."""
    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"adapter {spec!r} is not NAME=DIR: write e.g. --adapter anna=runs/anna")
        if name == BASE:
            raise ValueError(f"adapter name {BASE!r} is reserved for the base model: pick another name")
        if name in adapters:
            raise ValueError(f"two adapters are named {name!r} ({adapters[name]} and {path}): give each its own name")
        adapters[name] = Path(path)
    return adapters


def adapter_dir(path: Path) -> Path:
    """The peft adapter dir of a RUN_DIR (`RUN_DIR/adapter`) or an adapter dir itself."""
    from sobesednik.modeling.load import ADAPTER_DIR

    for candidate in (path / ADAPTER_DIR, path):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    raise ModelDirError(f"{path} holds no {ADAPTER_CONFIG}: pass a RUN_DIR of `sobesednik train` or a peft "
                        "adapter dir as --adapter NAME=DIR")


def _shape(config: Any) -> dict[str, Any]:
    values = config.to_dict()
    return {key: values[key] for key in SHAPE_FIELDS if key in values}


def check_base(name: str, adapter: Path, base: str, base_config: Any) -> None:
    """Refuse an adapter trained on another base than `base`: its recorded base's config must match in shape."""
    from transformers import AutoConfig

    recorded = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    try:
        trained_on = AutoConfig.from_pretrained(recorded, local_files_only=True) if recorded else None
    except (OSError, ValueError):
        trained_on = None  # its base is not here: the weights' shapes are checked when the adapter loads
    if trained_on is None:
        return
    mine, theirs = _shape(base_config), _shape(trained_on)
    # vocab_size grows by the role tokens training added; the adapter's tokenizer is checked separately.
    differs = {key for key in mine.keys() & theirs.keys() if key != "vocab_size" and mine[key] != theirs[key]}
    if differs:
        shown = ", ".join(f"{key} {theirs[key]} vs {mine[key]}" for key in sorted(differs))
        raise ConfigError(f"adapter {name!r} was trained on {recorded}, not on the served base {base} ({shown}): "
                          "serve it with its own base (--model), or train it on this one")


def load_personas(base: str, adapters: Mapping[str, Path]) -> tuple[Any, Any]:
    """The base with every adapter loaded beside it (a `PeftModel`) and the tokenizer they share."""
    from peft import PeftModel

    from sobesednik.modeling.load import load_base, load_tokenizer

    if not adapters:
        raise ConfigError("no adapters to serve: pass --adapter NAME=DIR at least once")
    dirs = {name: adapter_dir(path) for name, path in adapters.items()}
    model, _, _ = load_base(base)
    tokenizers = {name: load_tokenizer(str(path))[0] for name, path in dirs.items()}
    first, tokenizer = next(iter(tokenizers.items()))
    for name, other in tokenizers.items():
        check_base(name, dirs[name], base, model.config)
        if other.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"adapters {first!r} and {name!r} were trained with different tokenizers: serve "
                              "adapters of one base trained by the same `sobesednik` version together")
    if model.get_input_embeddings().num_embeddings != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    for index, (name, path) in enumerate(dirs.items()):
        try:
            if index == 0:
                model = PeftModel.from_pretrained(model, path, adapter_name=name)
            else:
                model.load_adapter(path, adapter_name=name)
        except RuntimeError as error:  # a size mismatch: the adapter's base has another shape
            raise ConfigError(f"adapter {name!r} ({path}) does not fit the served base {base}: "
                              f"{str(error).splitlines()[-1].strip()}; serve it with its own base") from None
    model.eval()
    rows = use_token_rows(model)
    logger.info("adapters %s loaded on %s; %d added-token layer(s) served from their trained rows",
                ", ".join(dirs), base, rows)
    return model, tokenizer


class _TokenRows:
    """Mixed-batch forward of peft's `TrainableTokensWrapper`: the base layer over the whole batch, then each
    adapter's trained rows over its own rows of the batch (one pass, whatever the base layer's kernel)."""

    def _mixed_batch_forward(self: Any, x: torch.Tensor, *args: Any, adapter_names: list[str],
                             **kwargs: Any) -> torch.Tensor:
        import torch
        from torch import nn

        layer = self.token_adapter
        base_layer = layer.base_layer
        output = base_layer(x, *args, **kwargs)
        for adapter in set(adapter_names) & layer.token_indices.keys():  # BASE and adapters without rows: as is
            batch_rows = torch.tensor([i for i, name in enumerate(adapter_names) if name == adapter],
                                      device=output.device)
            indices = torch.tensor(layer.token_indices[adapter], device=output.device)
            trained = layer.trainable_tokens_delta[adapter]
            if isinstance(base_layer, nn.Embedding):
                tokens = x[batch_rows]
                found = tokens.unsqueeze(-1) == indices  # [rows, positions, added tokens]
                hit = found.any(-1)
                if hit.any():
                    embedded = output[batch_rows]
                    embedded[hit] = trained.to(output.dtype)[found[hit].int().argmax(-1)]
                    output[batch_rows] = embedded
                continue
            # An output head: the added tokens' logits come from their trained rows (and bias, if any).
            columns = x[batch_rows] @ trained.to(x.dtype).t()
            bias = getattr(base_layer, "bias", None)
            if bias is not None:
                columns = columns + bias[indices].to(columns.dtype)
            logits = output[batch_rows]
            logits[..., indices] = columns.to(output.dtype)
            output[batch_rows] = logits
        return output


@functools.cache
def _token_rows_class() -> type:
    from peft.utils.other import TrainableTokensWrapper

    return type("TokenRowsWrapper", (_TokenRows, TrainableTokensWrapper), {})


def use_token_rows(model: nn.Module) -> int:
    """Give every `TrainableTokensWrapper` of `model` the row-wise mixed-batch forward; return the count."""
    from peft.utils.other import TrainableTokensWrapper

    wrappers = [module for module in model.modules() if type(module) is TrainableTokensWrapper]
    for wrapper in wrappers:
        wrapper.__class__ = _token_rows_class()
    return len(wrappers)

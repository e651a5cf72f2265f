"""Base models and tokenizers from a Hub id or a local dir, made ready for the dialogue format.

`load_tokenizer` guarantees the contract every later stage relies on: `@@ПЕРВЫЙ@@` and `@@ВТОРОЙ@@` are single
tokens, the EOS is `@@ПЕРВЫЙ@@` (the token that closes a reply), and the pad token is never the EOS (padding
with EOS would mask exactly the token the model must learn to write). `load_base` loads the weights and resizes
the embeddings when role tokens had to be added; `load_run` loads a training run (base + LoRA adapter).

    model, tokenizer, added_ids = load_base("tinkoff-ai/ruDialoGPT-medium")
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sobesednik.dialogue import ASSISTANT_TOKEN, CLOSING_TOKEN, USER_TOKEN
from sobesednik.errors import ConfigError, ModelDirError
from sobesednik.modeling.defaults import hub_names
from sobesednik.modeling.formats import Format, chat_format, format_of
from sobesednik.modeling.model_dir import set_chat_template, set_special_ids

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PAD_TOKEN = "<pad>"
ADAPTER_DIR = "adapter"  # inside a RUN_DIR: the peft adapter and the tokenizer it was trained with


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def check_model_source(name: str, marker: str = "config.json") -> str:
    """`name` as from_pretrained takes it; a local dir must exist and hold `marker`."""
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelDirError(f"model directory {name} does not exist: pass a directory made by "
                                "`sobesednik tiny-model` or `sobesednik export`, or a Hub id")
        if not (path / marker).is_file():
            raise ModelDirError(f"{name} has no {marker}, so it is not a Hugging Face model directory: "
                                "pass the directory that `save_pretrained` wrote")
        return str(path.resolve())  # absolute: the adapter records it as its base, used from any directory
    return name


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (or `HF_ENDPOINT`) opens within `timeout` seconds."""
    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(loader: Any, name: str, marker: str = "config.json", **kwargs: Any) -> Any:
    """Call `loader.from_pretrained`, turning "cannot find it" into one line with the fix.

    A Hub id is looked up in the local cache first, under each of its names (`defaults.HUB_ALIASES`); only when
    it is in none is the network tried, and only when the Hub answers at all: huggingface_hub would otherwise
    retry for most of a minute before failing.
    """
    source = check_model_source(name, marker)
    if Path(source).is_dir():
        try:
            return loader.from_pretrained(source, **kwargs)
        except OSError as error:
            raise ModelDirError(f"cannot load {source}: {error}".splitlines()[0]) from None
    names = hub_names(source)
    for hub_id in names:
        try:
            return loader.from_pretrained(hub_id, local_files_only=True, **kwargs)
        except OSError:
            pass
    if not _hub_offline() and _hub_reachable():
        for hub_id in names:
            try:
                return loader.from_pretrained(hub_id, **kwargs)
            except OSError:
                pass
    raise ModelDirError(
        f"{name!r} is no directory here ({Path.cwd()}), and as a Hub model ({' or '.join(names)}) it is not in "
        "the local cache and no network: pass an existing directory (`sobesednik export` or "
        "`sobesednik tiny-model` makes one), or run once with network access (and check the Hub id) to download it"
    )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, format: Format | None = None) -> list[int]:
    """Make `tokenizer` speak `format` (its own when None, see `formats.format_of`); return the ids added to it.

    The dialogue format adds the missing role tokens and sets its chat template; the native format keeps the
    base's template. Either way the EOS becomes the token that closes a reply and the pad token differs from it.
    """
    format = format or format_of(tokenizer)
    missing: list[str] = []
    if format == "native":
        if format_of(tokenizer) != "native":
            raise ConfigError("--format native needs a base whose tokenizer ships its own chat template, and this "
                              "one has none (or the dialogue format's): drop --format native")
        tokenizer.eos_token = chat_format(tokenizer).end_of_turn
    else:
        vocab = tokenizer.get_vocab()
        missing = [token for token in (USER_TOKEN, ASSISTANT_TOKEN) if token not in vocab]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        tokenizer.eos_token = CLOSING_TOKEN
        set_chat_template(tokenizer)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # Any non-EOS token works (padded positions are masked); reuse GPT-2's <|endoftext|> when it is free.
        if tokenizer.bos_token is not None and tokenizer.bos_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.bos_token
        else:
            missing.append(PAD_TOKEN)
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return [tokenizer.convert_tokens_to_ids(token) for token in missing]


def load_tokenizer(name: str, format: Format | None = None) -> tuple[PreTrainedTokenizerBase, list[int]]:
    """The tokenizer of `name`, prepared for `format` (its own when None), and the ids of the tokens added to it."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, "tokenizer_config.json")
    added = prepare_tokenizer(tokenizer, format)
    return tokenizer, added


def load_base(
    name: str, *, load_in_4bit: bool = False, dtype: str = "float32", format: Format | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[int]]:
    """Base model and tokenizer prepared for `format`; embeddings resized when tokens were added (ids returned).

    Pickle-only checkpoints (`pytorch_model.bin`, as ruDialoGPT ships) load with torch's `weights_only`
    unpickler, which refuses anything but tensors: transformers' default, passed explicitly so it stays so.
    """
    import torch
    from transformers import AutoModelForCausalLM

    check_model_source(name)  # a model dir is checked for its weights' config before the tokenizer loads
    tokenizer, added = load_tokenizer(name, format)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "weights_only": True}
    if load_in_4bit:
        kwargs["quantization_config"] = quantization_config()
    model = _from_pretrained(AutoModelForCausalLM, name, **kwargs)
    if added or model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    set_special_ids(model, tokenizer)
    return model, tokenizer, added


def quantization_config() -> Any:
    """The QLoRA 4-bit NF4 config; refuses clearly where CUDA or bitsandbytes is missing."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--load-in-4bit (QLoRA) needs a CUDA GPU and none is available: "
                          "drop --load-in-4bit to train in full precision on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("--load-in-4bit needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def is_run_dir(path: Path) -> bool:
    return (path / ADAPTER_DIR / "adapter_config.json").is_file()


def run_base(run_dir: Path) -> str:
    """The base model a run was trained from, as recorded in its adapter config."""
    config = json.loads((run_dir / ADAPTER_DIR / "adapter_config.json").read_text(encoding="utf-8"))
    return config["base_model_name_or_path"]


def load_run(run_dir: Path, *, merge: bool = False) -> tuple[Any, PreTrainedTokenizerBase]:
    """Base + adapter of a RUN_DIR (a `PeftModel`, or a plain merged model with `merge=True`)."""
    from peft import PeftModel

    if not is_run_dir(run_dir):
        raise ModelDirError(f"{run_dir} is not a training run: {ADAPTER_DIR}/adapter_config.json is missing; "
                            "pass the --out directory of `sobesednik train`")
    # The run's tokenizer holds the tokens added during training; the rows the adapter trained fill them.
    tokenizer, _ = load_tokenizer(str(run_dir / ADAPTER_DIR))
    model, _, _ = load_base(run_base(run_dir), format=format_of(tokenizer))
    if model.get_input_embeddings().num_embeddings != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(model, run_dir / ADAPTER_DIR)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def load_model(path: str, *, merge: bool = False) -> tuple[Any, PreTrainedTokenizerBase]:
    """A RUN_DIR (base + adapter; merged into one plain model with `merge=True`) or a MODEL_DIR / Hub id (plain
    model), ready for evaluation."""
    if is_run_dir(Path(path)):
        return load_run(Path(path), merge=merge)
    model, tokenizer, _ = load_base(path)
    model.eval()
    return model, tokenizer


def load_config(name: str) -> Any:
    """The `transformers` config of a model dir or Hub id, without its weights."""
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, name)

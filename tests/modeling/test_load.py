"""Loading bases: role tokens, pad ≠ EOS, resized embeddings, and one clear line for what cannot load."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
from sobesednik.errors import ConfigError, ModelDirError
from sobesednik.modeling.load import load_base, load_model, load_tokenizer, quantization_config
from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model


@pytest.fixture(scope="module")
def generic_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2-like base without the role tokens, whose EOS is <|endoftext|>."""
    texts = ["привет как дела", "на дачу поедем в субботу", "купи хлеба и молока"] * 20
    return build_tiny_model(texts, tmp_path_factory.mktemp("generic"), TinyModelConfig(with_role_tokens=False))


def test_base_with_role_tokens_keeps_its_vocabulary(tiny_model_dir: Path):
    model, tokenizer, added = load_base(str(tiny_model_dir))
    assert added == []
    assert tokenizer.eos_token == USER_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_base_without_role_tokens_gets_them_and_resized_embeddings(generic_base: Path):
    model, tokenizer, added = load_base(str(generic_base))
    assert added == [tokenizer.convert_tokens_to_ids(USER_TOKEN), tokenizer.convert_tokens_to_ids(ASSISTANT_TOKEN)]
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.eos_token_id == added[0] == model.generation_config.eos_token_id
    assert tokenizer.pad_token_id not in (None, *added)
    ids = tokenizer(f"{USER_TOKEN} привет {ASSISTANT_TOKEN}", add_special_tokens=False)["input_ids"]
    assert ids[0] == added[0] and ids[-1] == added[1]


def test_pad_that_equals_eos_is_replaced(generic_base: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(generic_base)
    tokenizer.add_special_tokens({"additional_special_tokens": [USER_TOKEN, ASSISTANT_TOKEN]})
    tokenizer.pad_token = tokenizer.eos_token = USER_TOKEN  # the common pad = eos trick
    tokenizer.save_pretrained(tmp_path)
    prepared, _ = load_tokenizer(str(tmp_path))
    assert prepared.pad_token_id != prepared.eos_token_id == prepared.convert_tokens_to_ids(USER_TOKEN)


def test_missing_directory_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ModelDirError, match="does not exist: pass a directory made by"):
        load_base(str(tmp_path / "no-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match=r"has no config\.json"):
        load_model(str(tmp_path / "empty"))


def test_hub_id_offline_without_cache_says_what_to_do():
    with pytest.raises(ModelDirError, match="not in the local cache and no network: pass an existing directory"):
        load_base("tinkoff-ai/ruDialoGPT-medium")


def test_hub_id_not_cached_and_hub_unreachable_fails_at_once(monkeypatch: pytest.MonkeyPatch):
    """One connection attempt, then the clear error: not huggingface_hub's minute of retries."""
    from huggingface_hub import constants

    # As on a user's machine without network: not offline by configuration, and the Hub does not answer
    # (a loopback port nobody listens on stands in for it).
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    attempts = []
    guarded_connect = socket.socket.connect

    def counting_connect(sock: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and address[1] == closed_port:
            attempts.append(address)
        return guarded_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    with pytest.raises(ModelDirError, match="not in the local cache and no network"):
        load_base("tinkoff-ai/ruDialoGPT-medium")
    assert len(attempts) == 1


def test_a_missing_relative_dir_is_named_as_a_directory_too():
    """`models/sobesednik` (serve's default) reads like a Hub id: the error says the directory is not there."""
    with pytest.raises(ModelDirError, match=r"'models/sobesednik' is no directory here \(.+\), and as a Hub model"):
        load_model("models/sobesednik")


def test_cli_turns_a_missing_base_into_one_line_and_exit_2(prepared_data_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["train", "--data", str(prepared_data_dir), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "not in the local cache and no network" in result.output
    assert "Traceback" not in result.output


def test_load_in_4bit_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present: QLoRA is allowed")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        quantization_config()


def test_default_base_loads_under_either_hub_name(tiny_model_dir: Path, tmp_path: Path):
    """A cache that holds the model as t-bank-ai/… serves tinkoff-ai/… (the default), offline."""
    import shutil

    from transformers import AutoTokenizer

    from sobesednik.modeling.load import _from_pretrained

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--t-bank-ai--ruDialoGPT-medium"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    tokenizer = _from_pretrained(AutoTokenizer, "tinkoff-ai/ruDialoGPT-medium", "tokenizer_config.json",
                                 cache_dir=str(tmp_path / "hub"))
    assert USER_TOKEN in tokenizer.get_vocab()
    with pytest.raises(ModelDirError, match=r"\(tinkoff-ai/ruDialoGPT-small or t-bank-ai/ruDialoGPT-small\)"):
        load_base("tinkoff-ai/ruDialoGPT-small")


def test_pickle_only_weights_load_with_weights_only_and_export_as_safetensors(tiny_model_dir: Path, tmp_path: Path):
    """ruDialoGPT ships only pytorch_model.bin: it loads (weights_only unpickler), the export is safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sobesednik.training.export import export
    from sobesednik.training.lora import save_adapter, wrap_with_lora
    from sobesednik.training.settings import ExportSettings, TrainSettings

    pickled = tmp_path / "pickled"
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # transformers 5 writes only safetensors (`safe_serialization=False` is gone): pickle by hand, as old repos did.
    original.config.save_pretrained(pickled)
    torch.save(original.state_dict(), pickled / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(pickled)
    assert (pickled / "pytorch_model.bin").is_file() and not (pickled / "model.safetensors").exists()
    model, tokenizer, added = load_base(str(pickled))
    assert torch.equal(model.get_input_embeddings().weight, original.get_input_embeddings().weight)
    save_adapter(wrap_with_lora(model, TrainSettings(), added), tokenizer, tmp_path / "run" / "adapter")
    export(ExportSettings(run_dir=tmp_path / "run", out=tmp_path / "model"))
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "model" / "pytorch_model.bin").exists()

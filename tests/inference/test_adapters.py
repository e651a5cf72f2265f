"""Personas: several adapters of one base in one model; a mixed batch gives each row what its adapter alone gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sobesednik.errors import ConfigError, ModelDirError
from sobesednik.inference.adapters import BASE, load_personas, parse_adapters, use_token_rows
from sobesednik.inference.generator import Generator, Row
from sobesednik.modeling.load import load_base, load_run

from .test_generator import DIALOGUES


@pytest.fixture(scope="module")
def two_runs(trained_run_dir: Path, speaker_run_dir: Path) -> dict[str, Path]:
    """Two adapters of the same tiny base, trained on different data."""
    return {"all": trained_run_dir, "speaker": speaker_run_dir}


def test_parse_adapters_refuses_a_name_given_twice_and_a_spec_without_a_name() -> None:
    assert parse_adapters(["anna=runs/a", " boris = runs/b "]) == {"anna": Path("runs/a"), "boris": Path("runs/b")}
    with pytest.raises(ValueError, match=r"two adapters are named 'anna' .*give each its own name"):
        parse_adapters(["anna=runs/a", "anna=runs/b"])
    with pytest.raises(ValueError, match="'runs/a' is not NAME=DIR"):
        parse_adapters(["runs/a"])
    with pytest.raises(ValueError, match="reserved for the base"):
        parse_adapters([f"{BASE}=runs/a"])


@torch.inference_mode()
def test_mixed_batch_logits_equal_each_adapter_alone(two_runs: dict[str, Path], tiny_base_dir: Path) -> None:
    model, tokenizer = load_personas(str(tiny_base_dir), two_runs)
    ids = torch.tensor([tokenizer.encode("@@ВТОРОЙ@@ привет @@ПЕРВЫЙ@@ ну", add_special_tokens=False)] * 3)
    mixed = model(input_ids=ids, adapter_names=["all", "speaker", BASE]).logits
    for row, name in enumerate(two_runs):
        alone, _ = load_run(two_runs[name])
        torch.testing.assert_close(mixed[row], alone(input_ids=ids[:1]).logits[0], atol=1e-5, rtol=1e-5)
    with model.disable_adapter():
        torch.testing.assert_close(mixed[2], model(input_ids=ids[:1]).logits[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mixed[0], mixed[1])  # two different adapters, so the equalities mean something


@torch.inference_mode()
def test_trained_token_rows_in_a_mixed_batch_equal_peft_alone(tiny_model_dir: Path) -> None:
    """The added-token rows (embedding and tied head) computed row-wise equal peft's own whole-matrix path."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer, _ = load_base(str(tiny_model_dir))
    rows = tokenizer.convert_tokens_to_ids(["@@ПЕРВЫЙ@@", "@@ВТОРОЙ@@"])

    def config() -> LoraConfig:
        return LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True,
                          trainable_token_indices={"wte": rows})

    model = get_peft_model(model, config(), adapter_name="a")
    model.add_adapter("b", config())
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name or "trainable_tokens_delta" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
    model.eval()
    ids = torch.tensor([tokenizer.encode("@@ВТОРОЙ@@ привет @@ПЕРВЫЙ@@ ну @@ВТОРОЙ@@", add_special_tokens=False)] * 3)
    names = ["b", BASE, "a"]
    expected = model(input_ids=ids, adapter_names=names).logits  # peft's path: a merged matrix per adapter
    assert use_token_rows(model) == 2  # the embedding and the tied output head
    got = model(input_ids=ids, adapter_names=names).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[0, :, rows], got[2, :, rows])


def test_generator_mixed_batch_gives_each_row_its_adapters_greedy_reply(two_runs: dict[str, Path],
                                                                      tiny_base_dir: Path) -> None:
    personas = Generator.load_personas(str(tiny_base_dir), two_runs)
    personas.stop_ids = set()
    params = personas.defaults.with_overrides(temperature=0.0, max_new_tokens=12)
    prompts = [personas.chat_prompt(dialogue, 12) for dialogue in DIALOGUES]
    names = list(two_runs)
    mixed = personas.generate([Row(p, params, adapter=names[i % 2]) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        alone = Generator.load(two_runs[names[i % 2]])
        alone.stop_ids = set()
        assert mixed[i].text == alone.generate([Row(prompt, params)])[0].text
    assert all(c.text for c in mixed)


def test_adapter_of_another_base_is_refused_naming_both(trained_run_dir: Path, tiny_base_dir: Path,
                                                        tmp_path: Path) -> None:
    from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model

    texts = [message["content"] for dialogue in DIALOGUES for message in dialogue] * 20
    other = build_tiny_model(texts, tmp_path / "other", TinyModelConfig(n_embd=32, vocab_size=300))
    with pytest.raises(ConfigError, match=rf"adapter 'mine' was trained on {tiny_base_dir}.*not on the "
                                          rf"served base {other}.*n_embd 64 vs 32"):
        load_personas(str(other), {"mine": trained_run_dir})
    # Its recorded base gone: the weights' shapes still tell, in one line naming both.
    moved = tmp_path / "moved"
    shutil.copytree(trained_run_dir / "adapter", moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "/nowhere"}))
    with pytest.raises(ConfigError, match=rf"adapter 'mine' \({moved}\) does not fit the served base {other}"):
        load_personas(str(other), {"mine": moved})


def test_a_dir_without_an_adapter_is_refused(tmp_path: Path, tiny_base_dir: Path) -> None:
    with pytest.raises(ModelDirError, match=r"holds no adapter_config\.json"):
        load_personas(str(tiny_base_dir), {"anna": tmp_path})

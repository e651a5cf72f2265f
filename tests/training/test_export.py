"""`export`: merged logits equal base+adapter logits, and plain transformers serves the result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sobesednik.dialogue import USER_TOKEN, render
from sobesednik.errors import ConfigError, ModelDirError
from sobesednik.modeling.load import load_base, load_run, load_tokenizer
from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model
from sobesednik.training.export import export
from sobesednik.training.lora import wrap_with_lora
from sobesednik.training.settings import ExportSettings, TrainSettings
from tiny_training import train_briefly

MESSAGES = [{"role": "user", "content": "Кто едет на дачу?"}, {"role": "assistant", "content": "Я еду"},
            {"role": "user", "content": "Во сколько?"}]


def _logits(model, tokenizer, text: str):
    import torch

    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def test_merged_logits_equal_base_plus_adapter(trained_run_dir: Path, exported_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    adapted, tokenizer = load_run(trained_run_dir)
    merged = AutoModelForCausalLM.from_pretrained(exported_model_dir).eval()
    text = render(MESSAGES, add_generation_prompt=True)
    torch.testing.assert_close(_logits(merged, tokenizer, text), _logits(adapted, tokenizer, text),
                               atol=1e-4, rtol=1e-4)


def test_exported_dir_works_with_plain_transformers(exported_model_dir: Path):
    """Without importing sobesednik: chat template, generation config, generate() stopping at @@ПЕРВЫЙ@@."""
    script = f"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(exported_model_dir)!r})
model = AutoModelForCausalLM.from_pretrained({str(exported_model_dir)!r})
messages = json.loads(sys.argv[1])
prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
output = model.generate(**inputs, max_new_tokens=5)
config = model.generation_config
print(json.dumps({{"prompt": prompt, "eos": config.eos_token_id, "pad": config.pad_token_id,
                  "top_k": config.top_k, "new": output.shape[1] - inputs["input_ids"].shape[1],
                  "closing": tokenizer.convert_tokens_to_ids({USER_TOKEN!r}),
                  "sobesednik": "sobesednik" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", script, json.dumps(MESSAGES)], capture_output=True, text=True,
                            check=True)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["prompt"] == render(MESSAGES, add_generation_prompt=True)
    assert facts["eos"] == facts["closing"] != facts["pad"]
    assert facts["top_k"] == 10
    assert 1 <= facts["new"] <= 5
    assert facts["sobesednik"] is False
    assert (exported_model_dir / "model.safetensors").is_file()


def test_added_role_tokens_travel_with_the_adapter(tmp_path: Path):
    """A base without role tokens: the trained rows of the added tokens are saved, base+adapter == trained model."""
    import torch

    base_dir = build_tiny_model(["привет как дела", "поедем на дачу", "купи хлеба"] * 20, tmp_path / "base",
                                TinyModelConfig(with_role_tokens=False))
    model, tokenizer, added = load_base(str(base_dir))
    model = wrap_with_lora(model, TrainSettings(lora_dropout=0.0), added)
    batch = tokenizer(render(MESSAGES, add_generation_prompt=True), return_tensors="pt")
    train_briefly(model, batch)
    trained = _logits(model, tokenizer, render(MESSAGES, add_generation_prompt=True))
    run_dir = tmp_path / "run"
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "adapter")

    reloaded, reloaded_tokenizer = load_run(run_dir)
    assert len(reloaded_tokenizer) == len(tokenizer)
    torch.testing.assert_close(_logits(reloaded, tokenizer, render(MESSAGES, add_generation_prompt=True)), trained)
    export(ExportSettings(run_dir=run_dir, out=tmp_path / "model"))
    exported_tokenizer, _ = load_tokenizer(str(tmp_path / "model"))
    assert exported_tokenizer.convert_tokens_to_ids(USER_TOKEN) == added[0]


def test_export_refuses_a_non_empty_out_and_a_non_run(trained_run_dir: Path, tmp_path: Path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export(ExportSettings(run_dir=trained_run_dir, out=tmp_path / "taken"))
    with pytest.raises(ModelDirError, match="is not a training run"):
        export(ExportSettings(run_dir=tmp_path, out=tmp_path / "model"))


def test_exported_tokenizer_loads_as_a_plain_fast_tokenizer(exported_model_dir: Path):
    """`tokenizer_config.json` names a class every transformers version has (vLLM pins an older one)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from sobesednik.modeling.chat_template import CHAT_TEMPLATE

    config = json.loads((exported_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["chat_template"] == CHAT_TEMPLATE == (exported_model_dir / "chat_template.jinja").read_text()
    plain = PreTrainedTokenizerFast.from_pretrained(exported_model_dir)
    auto = AutoTokenizer.from_pretrained(exported_model_dir)
    prompt = plain.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == render(MESSAGES, add_generation_prompt=True)
    assert plain(prompt, add_special_tokens=False)["input_ids"] == auto(prompt, add_special_tokens=False)["input_ids"]
    assert plain.eos_token == USER_TOKEN and plain.pad_token not in (None, USER_TOKEN)

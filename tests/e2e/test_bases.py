"""Modern bases the whole way: prepare → train → export → serve → the openai client, and plain transformers.

- A tiny Llama built here with plain `transformers` and `tokenizers` (not by sobesednik): Llama 3 special tokens
  and chat template, an untied head, no role tokens. `train` with no base-specific flags adds the role tokens,
  picks the Llama layout's modules and trains the added rows on both ends; plain transformers generates from
  the export.
- `tiny-model --arch qwen2` and `--arch llama` trained with `--format native`: the export keeps ChatML / the
  Llama 3 template, and the service answers in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from service_process import run_service
from sobesednik.cli import app
from sobesednik.hardware import probe

pytestmark = pytest.mark.slow
runner = CliRunner()
# Duration only: a few steps prove the path, not the persona; no samples, no fidelity (tests of their own).
SHORT = ["--max-steps", "6", "--eval-steps", "3", "--samples", "0", "--fidelity-samples", "0", "--max-length", "128"]
MESSAGES = [{"role": "user", "content": "Кто едет на дачу?"}, {"role": "assistant", "content": "Я еду"},
            {"role": "user", "content": "Во сколько выезжаем?"}]


def _invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _llama_outside(texts: list[str], out: Path) -> Path:
    """A Llama-architecture base as a user might find one: built with plain transformers, no sobesednik code."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=1500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>")
    tokenizer.chat_template = (
        "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _serve_and_ask(model_dir: Path) -> str:
    with run_service(model_dir) as service:
        client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)
        completion = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8, seed=1)
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length", "empty")
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8
    return choice.message.content


def _plain_transformers(model_dir: Path) -> dict:
    """The export's prompt and a short generation, in a process that never imports sobesednik."""
    script = f"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(model_dir)!r})
model = AutoModelForCausalLM.from_pretrained({str(model_dir)!r})
prompt = tokenizer.apply_chat_template(json.loads(sys.argv[1]), add_generation_prompt=True, tokenize=False)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
output = model.generate(**inputs, max_new_tokens=5)
print(json.dumps({{"prompt": prompt, "new": output.shape[1] - inputs["input_ids"].shape[1],
                  "eos": tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id),
                  "sobesednik": "sobesednik" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", script, json.dumps(MESSAGES)], capture_output=True, text=True,
                            check=True)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["sobesednik"] is False and 1 <= facts["new"] <= 5
    return facts


def test_a_llama_built_outside_goes_the_whole_way_with_default_flags(tmp_path: Path, prepared_data_dir: Path):
    from sobesednik.dialogue import data_file, read_jsonl

    texts = [m["content"] for messages in read_jsonl(data_file(prepared_data_dir, "train")) for m in messages]
    base = _llama_outside(texts, tmp_path / "llama")
    output = _invoke(["train", "--data", str(prepared_data_dir), "--base", str(base), "--out", str(tmp_path / "run"),
                      *SHORT])
    assert f"{probe().describe()}: training in" in output.splitlines()[0]
    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"}
    assert set(config["trainable_token_indices"]) == {"embed_tokens", "lm_head"}  # untied: both ends
    _invoke(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")])
    assert isinstance(_serve_and_ask(tmp_path / "model"), str)
    facts = _plain_transformers(tmp_path / "model")
    assert facts["prompt"].startswith("@@ПЕРВЫЙ@@ Кто едет на дачу?") and facts["eos"] == "@@ПЕРВЫЙ@@"


@pytest.mark.parametrize(("arch", "opening", "end_of_turn"), [("qwen2", "<|im_start|>user\n", "<|im_end|>"),
                                                              ("llama", "<|begin_of_text|><|start_header_id|>user",
                                                               "<|eot_id|>")])
def test_native_format_goes_the_whole_way_and_the_export_keeps_the_template(
        tmp_path: Path, prepared_data_dir: Path, arch: str, opening: str, end_of_turn: str):
    base = tmp_path / "base"
    _invoke(["tiny-model", "--arch", arch, "--data", str(prepared_data_dir), "--out", str(base),
             "--pretrain-steps", "20"])
    _invoke(["train", "--data", str(prepared_data_dir), "--base", str(base), "--out", str(tmp_path / "run"),
             "--format", "native", *SHORT])
    _invoke(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")])
    reply = _serve_and_ask(tmp_path / "model")
    assert end_of_turn not in reply and "<|" not in reply
    facts = _plain_transformers(tmp_path / "model")
    assert facts["prompt"].startswith(opening) and facts["eos"] == end_of_turn
    assert "@@" not in facts["prompt"]

"""`sobesednik tiny-model`: a tiny base from a prepared dataset, pretrained so that LoRA has something to adapt."""

from __future__ import annotations

import math
from pathlib import Path

from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN, render
from sobesednik.training.pretrain import dialogue_text


def test_dialogue_text_is_the_training_rendering():
    messages = [{"role": "user", "content": "привет"}, {"role": "assistant", "content": "здорово"}]
    assert dialogue_text(messages) == render(messages, add_generation_prompt=False) + f" {USER_TOKEN}"


def test_tiny_model_command_builds_a_pretrained_base(prepared_data_dir: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["tiny-model", "--data", str(prepared_data_dir), "--out", str(out),
                                      "--pretrain-steps", "20", "--vocab-size", "600"])
    assert result.exit_code == 0, result.output
    final_loss = float(result.output.rsplit("final LM loss", 1)[1].strip(" )\n"))
    assert final_loss < math.log(600)  # below a uniform guess: it learned from the text
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert {USER_TOKEN, ASSISTANT_TOKEN} <= set(tokenizer.get_vocab())
    assert tokenizer.pad_token_id != tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(USER_TOKEN)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_tiny_model_without_data_is_one_clear_line(tmp_path: Path):
    result = CliRunner().invoke(app, ["tiny-model", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "run `sobesednik prepare" in result.output

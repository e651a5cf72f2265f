"""The `train` stage on the tiny model: what a run writes, that it learns, stops, resumes and refuses bad runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sobesednik.dialogue import CLOSING_TOKEN, read_jsonl, render
from sobesednik.errors import ConfigError, DatasetError
from sobesednik.modeling.load import load_base, load_run
from sobesednik.training.dataset import ConversationDataset
from sobesednik.training.metrics import reply_loss
from sobesednik.training.settings import TrainSettings
from sobesednik.training.train import resolve_precision, train


def test_run_dir_holds_adapter_metrics_plot_samples_and_config(trained_run_dir: Path):
    assert (trained_run_dir / "adapter" / "adapter_config.json").is_file()
    assert (trained_run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (trained_run_dir / "adapter" / "tokenizer_config.json").is_file()
    records = [json.loads(line) for line in (trained_run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in record for record in records)
    assert [record["step"] for record in records if "eval_loss" in record] == [20, 40]
    assert (trained_run_dir / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (trained_run_dir / "samples.md").read_text(encoding="utf-8").count("\n| ") == 4  # header + 3 rows
    assert len((trained_run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    config = yaml.safe_load((trained_run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["max_steps"] == 40
    assert config["precision_used"] in {"bf16", "fp32"}
    assert "CPU class" in config["hardware"]
    assert {"torch", "transformers", "peft"} <= set(config["versions"])


def test_valid_perplexity_drops_after_short_training(trained_run_dir: Path, tiny_base_dir: Path,
                                                     prepared_data_dir: Path):
    base, tokenizer, _ = load_base(str(tiny_base_dir))
    tuned, _ = load_run(trained_run_dir)
    valid = ConversationDataset.from_file(prepared_data_dir / "valid.jsonl", tokenizer, 256)
    before = reply_loss(base, valid, tokenizer.pad_token_id)["perplexity"]
    after = reply_loss(tuned, valid, tokenizer.pad_token_id)["perplexity"]
    assert after < before  # a tiny model on ~400 messages: the drop is small but must be there


def test_trained_model_writes_the_closing_token(trained_run_dir: Path, prepared_data_dir: Path):
    import torch

    model, tokenizer = load_run(trained_run_dir, merge=True)
    closing_id = tokenizer.convert_tokens_to_ids(CLOSING_TOKEN)
    stopped = 0
    torch.manual_seed(0)
    for dialogue in read_jsonl(prepared_data_dir / "valid.jsonl")[:10]:
        inputs = tokenizer(render(dialogue[:-1], add_generation_prompt=True), return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        stopped += closing_id in output[0, inputs["input_ids"].shape[1]:].tolist()
    assert stopped >= 5


def test_lora_weights_trained_and_base_weights_untouched(trained_run_dir: Path, tiny_base_dir: Path):
    import torch

    base, _, _ = load_base(str(tiny_base_dir))
    tuned, _ = load_run(trained_run_dir)
    lora_b = [parameter for name, parameter in tuned.named_parameters() if "lora_B" in name]
    assert lora_b and all(parameter.abs().max() > 0 for parameter in lora_b)  # peft initialises B to zero
    tuned_base = {name.removeprefix("base_model.model.").replace(".base_layer", ""): parameter
                  for name, parameter in tuned.named_parameters() if "lora_" not in name}
    for name, parameter in base.named_parameters():
        assert torch.equal(parameter, tuned_base[name]), name


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, prepared_data_dir: Path, tiny_base_dir: Path):
    settings = TrainSettings(data=prepared_data_dir, base=str(tiny_base_dir), out=tmp_path / "run", max_steps=4,
                             eval_steps=2, batch_size=4, samples=0, logging_steps=1, patience=0, fidelity_samples=0)
    assert train(settings).steps == 4
    resumed = train(settings.model_copy(update={"max_steps": 6, "resume": True}))
    assert resumed.steps == 6
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1 and 5 in steps  # step 1 was not trained twice; training went on from step 4
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-6").is_dir()


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(trained_run_dir: Path, tmp_path: Path,
                                                                 prepared_data_dir: Path):
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        train(TrainSettings(data=prepared_data_dir, base="unused", out=trained_run_dir))
    with pytest.raises(ConfigError, match="no checkpoint in"):
        train(TrainSettings(data=prepared_data_dir, base="unused", out=tmp_path / "new", resume=True))


def test_missing_dataset_is_one_clear_error(tmp_path: Path, tiny_base_dir: Path):
    with pytest.raises(DatasetError, match="run `sobesednik prepare"):
        train(TrainSettings(data=tmp_path / "nowhere", base=str(tiny_base_dir), out=tmp_path / "run"))


def test_fp16_on_cpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on CUDA")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16")


@pytest.mark.slow
def test_generic_base_without_packing_trains_adds_tokens_and_exports(tmp_path: Path, prepared_data_dir: Path):
    """A base lacking the role tokens, length-grouped batches: the added rows train and survive the export."""
    import torch
    from transformers import AutoModelForCausalLM

    from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model
    from sobesednik.training.export import export
    from sobesednik.training.settings import ExportSettings

    texts = [m["content"] for dialogue in read_jsonl(prepared_data_dir / "train.jsonl") for m in dialogue]
    base = build_tiny_model(texts, tmp_path / "generic", TinyModelConfig(with_role_tokens=False))
    settings = TrainSettings(data=prepared_data_dir, base=str(base), out=tmp_path / "run", max_steps=3,
                             batch_size=4, packing=False, samples=0, learning_rate=1e-2, fidelity_samples=0)
    train(settings)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert len(config["added_tokens"]) == 2
    adapted, tokenizer = load_run(tmp_path / "run")
    export(ExportSettings(run_dir=tmp_path / "run", out=tmp_path / "model"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    inputs = tokenizer(render(read_jsonl(prepared_data_dir / "valid.jsonl")[0][:-1], add_generation_prompt=True),
                       return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-4, rtol=1e-4)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    rows = [tensor for name, tensor in saved.items() if "trainable_tokens" in name]
    assert rows and rows[0].shape[0] == 2  # the two role tokens' rows travel with the adapter


def test_run_writes_fidelity_before_and_after_and_its_curve(speaker_run_dir: Path, speaker_data_dir: Path):
    report = json.loads((speaker_run_dir / "fidelity.json").read_text(encoding="utf-8"))
    manifest = json.loads((speaker_data_dir / "manifest.json").read_text(encoding="utf-8"))
    assert report["target"] == manifest["targets"][0] and report["definition"].startswith("fidelity = share")
    answered = min(TrainSettings().fidelity_samples, len(read_jsonl(speaker_data_dir / "valid.jsonl")))
    for stage in ("before", "after"):
        figures = report[stage]
        assert 0 <= figures["fidelity"] <= 1 and figures["fidelity"] == figures["target_share"]
        assert 0 <= figures["stop_rate"] <= 1 and figures["replies"] == answered
    records = [json.loads(line) for line in (speaker_run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(record["stage"], record["step"]) for record in records if "stage" in record]
    assert curve == [("before", 0), ("train", 5), ("train", 10), ("after", 10)]
    assert records[-1]["fidelity"] == report["after"]["fidelity"]


def test_samples_jsonl_holds_whole_contexts_and_cleaned_replies(speaker_run_dir: Path, speaker_data_dir: Path):
    from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN

    rows = [json.loads(line) for line in (speaker_run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    valid = read_jsonl(speaker_data_dir / "valid.jsonl")[:3]
    assert [row["context"] for row in rows] == [dialogue[:-1] for dialogue in valid]
    assert [row["real"] for row in rows] == [dialogue[-1]["content"] for dialogue in valid]
    for row in rows:
        for reply in (row["before"], row["after"]):
            assert reply == reply.strip() and USER_TOKEN not in reply and ASSISTANT_TOKEN not in reply
    table = (speaker_run_dir / "samples.md").read_text(encoding="utf-8")
    assert all(row["after"].replace("|", "\\|").replace("\n", " ") in table for row in rows)


def test_run_on_a_dataset_without_one_target_still_says_why_fidelity_is_missing(trained_run_dir: Path):
    report = json.loads((trained_run_dir / "fidelity.json").read_text(encoding="utf-8"))
    assert report["target"] is None and "prepare with --speaker NAME" in report["unavailable"]
    assert report["after"]["fidelity"] is None and 0 <= report["after"]["stop_rate"] <= 1


def test_the_command_draws_one_bar_and_no_library_noise(tmp_path: Path, prepared_data_dir: Path, tiny_base_dir: Path):
    """`sobesednik train` in a terminal: the step bar (evaluations draw none of their own), no warnings or logs."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "sobesednik", "train", "--data", str(prepared_data_dir), "--base",
               str(tiny_base_dir), "--out", str(tmp_path / "run"), "--max-steps", "4", "--eval-steps", "2",
               "--samples", "0", "--fidelity-samples", "0", "--max-length", "128"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all("it/s" in line or "s/it" in line for line in lines), lines  # bar updates only
    assert sum(line.lstrip().startswith("0%|") for line in lines) == 1, lines  # one bar, started once
    assert "eval_loss=" in lines[-1]

"""Personas: one `serve` process with two adapters of one base; `model` picks one, an unknown name is a 404.

The real process on a free port with the official openai client, and the CLI's one-line refusals.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from service_process import ServiceHandle, run_service
from sobesednik.inference.generator import Generator, Row

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "привет, как дела?"}]


@pytest.fixture(scope="module")
def personas(trained_run_dir: Path, speaker_run_dir: Path) -> dict[str, Path]:
    return {"vse": trained_run_dir, "odin": speaker_run_dir}


@pytest.fixture(scope="module")
def service(tiny_base_dir: Path, personas: dict[str, Path]) -> Iterator[ServiceHandle]:
    args = [part for name, path in personas.items() for part in ("--adapter", f"{name}={path}")]
    with run_service(tiny_base_dir, args=(*args, "--max-wait-ms", "300")) as handle:
        yield handle


@pytest.fixture
def client(service: ServiceHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="none", max_retries=0, timeout=60)


def test_models_lists_the_base_then_each_persona(client: openai.OpenAI, tiny_base_dir: Path) -> None:
    assert [model.id for model in client.models.list()] == [tiny_base_dir.name, "vse", "odin"]


def test_each_persona_answers_as_its_adapter_alone_in_one_batch(client: openai.OpenAI,
                                                                 personas: dict[str, Path]) -> None:
    def ask(name: str) -> tuple[str, str]:
        reply = client.chat.completions.create(model=name, messages=HELLO, temperature=0, max_tokens=8)
        return reply.model, reply.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:  # concurrent: the 300 ms window puts them in one mixed batch
        answers = list(pool.map(ask, ["vse", "odin", "vse", "odin"]))
    assert [model for model, _ in answers] == ["vse", "odin", "vse", "odin"]
    for name, path in personas.items():  # greedy: what the run alone, in-process, replies
        alone = Generator.load(path)
        params = alone.defaults.with_overrides(temperature=0.0, max_new_tokens=8)
        [expected] = alone.generate([Row(alone.chat_prompt(HELLO, 8), params)])
        assert {text for model, text in answers if model == name} == {expected.text}


def test_an_unknown_model_is_a_404_listing_the_known_ones(client: openai.OpenAI, tiny_base_dir: Path) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nikto", messages=HELLO, max_tokens=4)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"] == (f"model 'nikto' is not served here: use one of {tiny_base_dir.name}, vse, odin "
                                "(GET /v1/models)")
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nikto", prompt="привет", max_tokens=4)


def test_two_adapters_with_one_name_are_refused_in_one_line(tiny_base_dir: Path, trained_run_dir: Path,
                                                             speaker_run_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sobesednik", "serve", "--model", str(tiny_base_dir),
         "--adapter", f"anna={trained_run_dir}", "--adapter", f"anna={speaker_run_dir}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "two adapters are named 'anna'" in line and "give each its own name" in line


def test_a_run_dir_as_the_base_of_personas_is_refused_in_one_line(trained_run_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sobesednik", "serve", "--model", str(trained_run_dir),
         "--adapter", f"anna={trained_run_dir}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "is a RUN_DIR, and with --adapter it must be their base" in line


def test_an_adapter_of_another_base_is_refused_at_start_naming_both(tmp_path: Path, trained_run_dir: Path,
                                                                     tiny_base_dir: Path) -> None:
    from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model

    texts = [turn["content"] for turn in HELLO] * 50
    other = build_tiny_model(texts, tmp_path / "other", TinyModelConfig(n_embd=32, vocab_size=300))
    result = subprocess.run(
        [sys.executable, "-m", "sobesednik", "serve", "--model", str(other), "--adapter", f"anna={trained_run_dir}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"adapter 'anna' was trained on {tiny_base_dir}, not on the served base {other}" in line

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
# Several prompts, each reply forced to TOKENS tokens (a briefly trained base's greedy reply is often empty), so
# that an adapter's greedy text differs from the base's.
PROMPTS = [HELLO, [{"role": "user", "content": "кто в субботу едет на дачу?"}],
           [{"role": "user", "content": "во сколько встречаемся?"}, {"role": "assistant", "content": "в семь"},
            {"role": "user", "content": "а где?"}]]
TOKENS = 24


@pytest.fixture(scope="module")
def personas(trained_run_dir: Path, speaker_run_dir: Path) -> dict[str, Path]:
    return {"vse": trained_run_dir, "odin": speaker_run_dir}


@pytest.fixture(scope="module")
def service(tiny_base_dir: Path, personas: dict[str, Path]) -> Iterator[ServiceHandle]:
    args = [part for name, path in personas.items() for part in ("--adapter", f"{name}={path}")]
    # Unquantised: this module checks which adapter answers, and int8 noise (the same over an unmerged adapter
    # and a merged one only up to rounding) flips near-tied tokens of a barely trained model.
    with run_service(tiny_base_dir, args=(*args, "--max-wait-ms", "300", "--quantize", "none")) as handle:
        yield handle


@pytest.fixture
def client(service: ServiceHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="none", max_retries=0, timeout=60)


def test_models_lists_the_base_then_each_persona(client: openai.OpenAI, tiny_base_dir: Path) -> None:
    assert [model.id for model in client.models.list()] == [tiny_base_dir.name, "vse", "odin"]


def test_each_persona_answers_as_its_adapter_alone_in_one_batch(client: openai.OpenAI, personas: dict[str, Path],
                                                                 tiny_base_dir: Path) -> None:
    def ask(job: tuple[str, int]) -> tuple[str, int, str]:
        name, prompt = job
        reply = client.chat.completions.create(model=name, messages=PROMPTS[prompt], temperature=0,
                                               max_tokens=TOKENS, extra_body={"min_tokens": TOKENS})
        return reply.model, prompt, reply.choices[0].message.content

    names = [tiny_base_dir.name, *personas]
    jobs = [(name, prompt) for prompt in range(len(PROMPTS)) for name in names]
    with ThreadPoolExecutor(len(jobs)) as pool:  # concurrent: the 300 ms window puts them in one mixed batch
        answers = list(pool.map(ask, jobs))
    assert [model for model, _, _ in answers] == [name for name, _ in jobs]
    served = {(model, prompt): text for model, prompt, text in answers}
    # In-process on the service's path (`--dtype auto --quantize none`); a forced 24-token reply of a barely
    # trained model can still flip a late token between batch shapes, so each reply is judged by the reference
    # it follows longer.
    base = _greedy(Generator.load(str(tiny_base_dir), dtype="auto", quantize="none"))
    for name, path in personas.items():
        alone = _greedy(Generator.load(path, dtype="auto", quantize="none"))
        assert alone != base, f"{name}'s adapter replies as the base does: the check below could not fail"
        for prompt, (own, plain) in enumerate(zip(alone, base, strict=True)):
            if own != plain:
                reply = served[name, prompt]
                assert _common_prefix(reply, own) > _common_prefix(reply, plain), (name, reply, own, plain)


def _common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _greedy(generator: Generator) -> list[str]:
    params = generator.defaults.with_overrides(temperature=0.0, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
    return [done.text for done in generator.generate([Row(generator.chat_prompt(messages, TOKENS), params)
                                                      for messages in PROMPTS])]


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

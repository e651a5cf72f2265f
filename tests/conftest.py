"""Fixtures every test package shares: a hermetic environment, the sample export, a tiny model built offline.

Hermetic means: home, caches and the Hugging Face hub point into a temp dir, the hub is offline, `.env`
files of the developer are not read, and sockets may connect only to loopback, so a test that would touch the
network fails loudly instead of hanging or passing by luck.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sobesednik.hardware import ARM_CLASSES, OVERRIDE_ENV, probe

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_EXPORT = REPO_ROOT / "examples" / "chat_export" / "result.json"


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The CPU-class cap is a fact about the machine (CI forces the AVX2 path with it), not a user setting.
    for name in [name for name in os.environ if name.startswith("SOBESEDNIK_") and name != OVERRIDE_ENV]:
        monkeypatch.delenv(name)
    # Settings classes read `.env` from the working directory; run every test from a clean one.
    monkeypatch.chdir(home)

    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: object) -> object:
        if not _is_loopback(address):
            raise RuntimeError(f"tests must not use the network: connect to {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture
def force_cpu_class() -> Iterator[Callable[[str], None]]:
    """`force_cpu_class("avx2")` makes the capability probe see at most that class for the rest of the test."""
    before = os.environ.get(OVERRIDE_ENV)

    def force(cpu_class: str) -> None:
        os.environ[OVERRIDE_ENV] = cpu_class
        probe.cache_clear()

    yield force
    if before is None:
        os.environ.pop(OVERRIDE_ENV, None)
    else:
        os.environ[OVERRIDE_ENV] = before
    probe.cache_clear()


@pytest.fixture
def force_float32_class(force_cpu_class: Callable[[str], None]) -> Callable[[], None]:
    """Caps the probe to this CPU's class without bf16 (avx2 on x86, arm64 on ARM64, where an x86 cap cannot
    apply): float32 with dynamic int8 serving, float32 training."""
    return lambda: force_cpu_class("arm64" if probe().cpu_class in ARM_CLASSES else "avx2")


@pytest.fixture(scope="session")
def sample_export() -> Path:
    """The Russian group-chat export that ships with the project."""
    return SAMPLE_EXPORT


def _export_texts(export: Path) -> list[str]:
    """Plain text of every message with text: enough to train a tokenizer, without the `prepare` stage."""
    messages = json.loads(export.read_text(encoding="utf-8"))["messages"]
    texts = []
    for message in messages:
        text = message.get("text", "")
        if isinstance(text, list):
            text = "".join(part if isinstance(part, str) else part.get("text", "") for part in text)
        if text.strip():
            texts.append(text)
    return texts


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> Path:
    """A randomly initialised tiny GPT-2 with a tokenizer trained on the sample export's text."""
    from sobesednik.modeling.tiny import build_tiny_model

    return build_tiny_model(_export_texts(sample_export), tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_arch_dirs(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> dict[str, Path]:
    """Untrained tiny bases of every `tiny-model --arch`, tokenizers trained on the sample export's text."""
    from sobesednik.modeling.tiny import ARCHS, TinyModelConfig, build_tiny_model

    texts = _export_texts(sample_export)
    return {arch: build_tiny_model(texts, tmp_path_factory.mktemp(f"tiny-{arch}"), TinyModelConfig(arch=arch))
            for arch in ARCHS}


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> Path:
    """`sobesednik prepare` with default options on the sample export: train/valid/test.jsonl, stats, manifest."""
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings

    # Session fixtures start before `hermetic_env`: keep a developer's SOBESEDNIK_* and .env out by hand.
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("SOBESEDNIK_")]:
            patch.delenv(name)
        settings = PrepareSettings(exports=[sample_export], out=tmp_path_factory.mktemp("prepared"),
                                   progress=False, _env_file=None)
    return prepare(settings).out


@pytest.fixture(scope="session")
def speaker_data_dir(tmp_path_factory: pytest.TempPathFactory, sample_export: Path, prepared_data_dir: Path) -> Path:
    """`prepare --speaker` on the sample's most talkative author: one target, so fidelity can be measured."""
    from collections import Counter

    from sobesednik.data.prepare import SPEAKERS_FILE, prepare
    from sobesednik.data.settings import PrepareSettings

    lines = (prepared_data_dir / SPEAKERS_FILE).read_text(encoding="utf-8").splitlines()
    [(speaker, _)] = Counter(json.loads(line)["speaker"] for line in lines).most_common(1)
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("SOBESEDNIK_")]:
            patch.delenv(name)
        settings = PrepareSettings(exports=[sample_export], out=tmp_path_factory.mktemp("speaker"), speaker=[speaker],
                                   progress=False, _env_file=None)
    return prepare(settings).out


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory, prepared_data_dir: Path) -> Path:
    """`sobesednik tiny-model` on the prepared sample: a tiny GPT-2 pretrained briefly on the dialogues' text."""
    from sobesednik.training.pretrain import build_tiny_base
    from sobesednik.training.settings import TinyModelSettings

    out = tmp_path_factory.mktemp("tiny-base") / "model"
    return build_tiny_base(TinyModelSettings(data=prepared_data_dir, out=out, pretrain_steps=60)).model_dir


def _short_run(tmp_path_factory: pytest.TempPathFactory, data: Path, base: Path, name: str, steps: int) -> Path:
    """A brief LoRA run of `steps` steps on `data`, evaluated twice, with a high rate so that it moves."""
    from sobesednik.training.settings import TrainSettings
    from sobesednik.training.train import train

    settings = TrainSettings(data=data, base=str(base), out=tmp_path_factory.mktemp(name) / "run", max_steps=steps,
                             eval_steps=steps // 2, batch_size=8, learning_rate=3e-3, samples=3, logging_steps=5)
    return train(settings).run_dir


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory: pytest.TempPathFactory, prepared_data_dir: Path, tiny_base_dir: Path) -> Path:
    """A LoRA RUN_DIR (`adapter/`, metrics.jsonl, loss.png, samples.md, config.yaml) trained briefly on the sample."""
    return _short_run(tmp_path_factory, prepared_data_dir, tiny_base_dir, "run", 40)


@pytest.fixture(scope="session")
def speaker_run_dir(tmp_path_factory: pytest.TempPathFactory, speaker_data_dir: Path, tiny_base_dir: Path) -> Path:
    """A short LoRA run on `speaker_data_dir`: fidelity.json, samples.jsonl and the fidelity curve are measured."""
    return _short_run(tmp_path_factory, speaker_data_dir, tiny_base_dir, "speaker-run", 10)


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory: pytest.TempPathFactory, trained_run_dir: Path) -> Path:
    """`sobesednik export` of `trained_run_dir`: a plain HF model dir with chat template and generation_config."""
    from sobesednik.training.export import export
    from sobesednik.training.settings import ExportSettings

    out = tmp_path_factory.mktemp("exported") / "model"
    return export(ExportSettings(run_dir=trained_run_dir, out=out)).model_dir

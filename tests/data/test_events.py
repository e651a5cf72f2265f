"""The worker-process reader gives exactly what the in-process reader gives, errors included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sobesednik.data import prepare as prepare_module
from sobesednik.data.split import SPLITS
from sobesednik.errors import ExportFormatError

from .exports import run_prepare


def test_parallel_reader_writes_the_same_dataset(sample_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sequential = run_prepare(sample_export, tmp_path / "one")
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    parallel = run_prepare(sample_export, tmp_path / "two", progress=True)
    assert parallel == sequential
    for name in [f"{split}.jsonl" for split in SPLITS]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    manifest_one = (tmp_path / "one" / "manifest.json").read_text(encoding="utf-8")
    manifest_two = (tmp_path / "two" / "manifest.json").read_text(encoding="utf-8")
    assert manifest_one.split('"sha256"')[1][:70] == manifest_two.split('"sha256"')[1][:70]


def test_parallel_reader_raises_the_workers_error(sample_export: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    truncated = tmp_path / "result.json"
    truncated.write_bytes(sample_export.read_bytes()[:50_000])
    with pytest.raises(ExportFormatError, match="is truncated"):
        run_prepare(truncated, tmp_path / "out")


@pytest.mark.parametrize(("cores", "busy", "forks"), [({0}, 0.0, False), ({0, 1}, 0.0, True), ({0, 1}, 1.2, False),
                                                      ({0, 1, 2, 3}, 1.0, True)])
def test_reader_process_only_with_a_second_idle_core(sample_export: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, cores: set[int],
                                                     busy: float, forks: bool):
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(prepare_module.os, "sched_getaffinity", lambda pid: cores)
    watched: list[set[int]] = []
    monkeypatch.setattr(prepare_module, "_busy_cores", lambda cpus: watched.append(cpus) or busy)
    modes: list[bool] = []
    real = prepare_module.read_events

    def record(*args: object, parallel: bool, **kwargs: object):
        modes.append(parallel)
        return real(*args, parallel=parallel, **kwargs)

    monkeypatch.setattr(prepare_module, "read_events", record)
    run_prepare(sample_export, tmp_path / "out")
    assert modes == [forks]
    assert watched == ([cores] if len(cores) > 1 else [])  # one core is not worth watching


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux's /proc/stat")
def test_busy_cores_sees_a_core_kept_busy() -> None:
    cpus = os.sched_getaffinity(0)
    idle = prepare_module._busy_cores(cpus)
    assert 0 <= idle <= len(cpus)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter has started and spins
        assert prepare_module._busy_cores(cpus) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_one_core_run_writes_the_same_dataset(sample_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """As under `taskset -c 0`: the process may use one core only."""
    everywhere = run_prepare(sample_export, tmp_path / "all")
    allowed = os.sched_getaffinity(0)
    monkeypatch.setattr(prepare_module, "_PARALLEL_MIN_BYTES", 0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        one_core = run_prepare(sample_export, tmp_path / "one")
    finally:
        os.sched_setaffinity(0, allowed)
    assert one_core == everywhere
    for name in [f"{split}.jsonl" for split in SPLITS]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "all" / name).read_bytes()

"""Data-parallel training: `accelerate launch` and `torchrun` with 2 CPU processes (gloo) run the unchanged `train`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _launcher(name: str, port: int) -> list[str]:
    executable = str(Path(sys.executable).with_name(name))
    if name == "torchrun":
        return [executable, "--nproc_per_node", "2", "--master_port", str(port)]
    # `--multi_gpu` picks accelerate's torch.distributed launcher; without a GPU the ranks use gloo on the CPU.
    return [executable, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_processes_both_step_and_rank_0_saves_one_adapter(prepared_data_dir: Path, tiny_base_dir: Path,
                                                               tmp_path: Path, launcher: str):
    out = tmp_path / "run"
    with socket.socket() as probe:  # a free port: other test runs may be launching at the same time
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*_launcher(launcher, port), "-m", "sobesednik", "train",
               "--data", str(prepared_data_dir), "--base", str(tiny_base_dir), "--out", str(out),
               "--max-steps", "4", "--eval-steps", "4", "--batch-size", "2", "--samples", "0", "--precision", "fp32"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "process 1/2: 4 steps" in result.stdout  # both ranks reached the same global step
    assert "process 2/2: 4 steps" in result.stdout
    assert result.stdout.count("adapter written to") == 1
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))["num_processes"] == 2

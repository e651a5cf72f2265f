"""Start `sobesednik serve` as a real subprocess on a free port, for integration tests of the API and the bot.

    from service_process import run_service     # tests/ is on sys.path (rootdir conftest)

    with run_service(tiny_model_dir, env={"SOBESEDNIK_API_KEY": "k"}) as service:
        httpx.get(f"{service.url}/readyz")

The context manager polls `/readyz` until the model is loaded, fails with the server's log if the process
dies or does not get ready in time, and terminates it on exit (SIGTERM, then SIGKILL). `service.log()` returns
what the server printed so far.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = 120.0  # loading a tiny model takes seconds; a shared 2-core CI box can be slow
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceHandle:
    process: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:<port>, no trailing slash
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_ready(handle: ServiceHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"sobesednik serve exited with {handle.process.returncode} before it was ready; "
                               f"its log:\n{handle.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{handle.url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"sobesednik serve was not ready after {timeout:.0f} s; its log:\n{handle.log()}")


@contextlib.contextmanager
def run_service(model_dir: str | Path, *, env: Mapping[str, str] | None = None, port: int | None = None,
                args: tuple[str, ...] = (), ready_timeout: float = READY_TIMEOUT_S) -> Iterator[ServiceHandle]:
    """`python -m sobesednik serve --model MODEL_DIR --port PORT` until the block ends; yields its handle."""
    port = port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="sobesednik-serve-"))
    log_path = log_dir / "serve.log"
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "sobesednik", "serve", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), *args]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=child_env, cwd=log_dir)
    handle = ServiceHandle(process, f"http://127.0.0.1:{port}", port, log_path)
    try:
        _wait_ready(handle, ready_timeout)
        yield handle
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""Run `sobesednik serve` as a child process on a free port and wait until it is ready.

Used by `sobesednik demo` and by the integration tests of the API and the bot: the real server, over a real
socket, with a clear failure story (its log) when it dies or does not get ready in time.

    with run_service(Path("models/demo")) as service:
        httpx.get(f"{service.url}/readyz")
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

from sobesednik.errors import ServiceError

READY_TIMEOUT_S = 180.0  # loading and warming a model; a shared 2-core CI machine can be slow
STOP_TIMEOUT_S = 15.0  # after SIGTERM, before SIGKILL: in-flight requests get this long to finish


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
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


def wait_ready(handle: ServiceHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise ServiceError(
                f"sobesednik serve exited with {handle.process.returncode} before it was ready; "
                f"its log ({handle.log_path}):\n{handle.log()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{handle.url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise ServiceError(f"sobesednik serve was not ready after {timeout:.0f} s; its log:\n{handle.log()}")


def start_process(command: list[str], *, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` with `env` over the current environment, its output going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=log_path.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code."""
    process.terminate()
    try:
        return process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextlib.contextmanager
def run_service(
    model_dir: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    ready_timeout: float = READY_TIMEOUT_S,
    log_path: Path | None = None,
) -> Iterator[ServiceHandle]:
    """`python -m sobesednik serve --model MODEL_DIR --port PORT` until the block ends; yields its handle."""
    port = port or free_port()
    log_path = log_path or Path(tempfile.mkdtemp(prefix="sobesednik-serve-")) / "serve.log"
    command = [sys.executable, "-m", "sobesednik", "serve", "--model", str(Path(model_dir).resolve()),
               "--host", "127.0.0.1", "--port", str(port), *args]
    process = start_process(command, env=env or {}, log_path=log_path)
    handle = ServiceHandle(process, f"http://127.0.0.1:{port}", port, log_path)
    try:
        wait_ready(handle, ready_timeout)
        yield handle
    finally:
        stop_process(process)

"""Run a function locally under functions-framework, as `movierec serve`, the demo and the tests do."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import requests

from movierec.errors import ConfigError, MovierecError

FUNCTIONS = ("ingest", "precompute", "recommend", "deadletter")


def functions_dir() -> Path:
    """`functions/` beside the source tree, or in the working directory (as in the images)."""
    candidates = [Path(__file__).resolve().parents[2] / "functions", Path.cwd() / "functions"]
    if env := os.environ.get("MOVIEREC_FUNCTIONS_DIR"):
        candidates.insert(0, Path(env))
    for candidate in candidates:
        if (candidate / "recommend" / "main.py").exists():
            return candidate
    raise ConfigError("cannot find functions/: set MOVIEREC_FUNCTIONS_DIR")


def serve_command(name: str, *, host: str, port: int) -> list[str]:
    if name not in FUNCTIONS:
        raise ConfigError(f"unknown function {name!r}; one of {', '.join(FUNCTIONS)}")
    source = functions_dir() / name / "main.py"
    return [sys.executable, "-m", "functions_framework", "--source", str(source), "--target", name,
            "--host", host, "--port", str(port)]


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, *, timeout: float, what: str,
               poll: float = 0.1) -> None:
    """Poll `ready` every `poll` seconds until it is true; MovierecError if `process` exits first
    or `timeout` passes. A connection refused (the server not listening yet) counts as not ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MovierecError(f"{what} exited with {process.returncode} at start")
        try:
            if ready():
                return
        except (requests.ConnectionError, ConnectionError):
            pass
        time.sleep(poll)
    raise MovierecError(f"{what} was not ready within {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    """A `ready` check for `wait_until`: GET url answers 200."""
    return lambda: requests.get(url, timeout=1).status_code == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FunctionProcess:
    """A function in a child process on loopback; a context manager that waits for /healthz."""

    def __init__(self, name: str, *, store: str, port: int | None = None, env: dict[str, str] | None = None,
                 log: Path | None = None):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = os.environ | {"MOVIEREC_STORE": store} | (env or {})
        self._log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> FunctionProcess:
        # The child keeps its own copy of the log's descriptor; this process closes its one.
        with open(self._log, "ab") if self._log else contextlib.nullcontext(subprocess.DEVNULL) as out:
            self.process = subprocess.Popen(
                serve_command(self.name, host="127.0.0.1", port=self.port), env=self._env, stdout=out, stderr=out,
                start_new_session=True,  # its own process group: gunicorn's workers go down with it
            )
        try:
            wait_until(http_ok(f"{self.url}/healthz"), self.process, timeout=timeout, what=self.name)
        except MovierecError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, as a crash or an OOM kill would."""
        if self.process:
            self._reap_group(signal.SIGKILL)
            self.process.wait()

    def _reap_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Run a function locally under functions-framework, as `movierec serve` and the demo do."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
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


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call a bound method in every forked child (a gunicorn worker), without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        if (alive := ref()) is not None:
            alive()

    os.register_at_fork(after_in_child=call)


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MovierecError(f"{self.name} exited with {self.process.returncode} at start")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise MovierecError(f"{self.name} did not answer /healthz within {timeout:.0f} s")

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

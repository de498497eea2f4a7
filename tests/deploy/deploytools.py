"""Shared helpers for the offline deploy checks (knative/, terraform/, docker/,
.github/workflows/). The tools live in .tools/, installed by
scripts/install-deploy-tools.sh; a missing tool fails the tests, it never skips them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# ../shared beside the repository: the Knative CRD schemas (see its SOURCE.md).
KNATIVE_SCHEMAS = REPO.parent / "shared" / "schemas" / "knative"
TOOLS = REPO / ".tools"
LINT_PYTHON = TOOLS / "lint-venv" / "bin" / "python"
MANIFEST_TOOL = Path(__file__).with_name("manifest_tool.py")
OVERLAYS = sorted(p.name for p in (REPO / "knative" / "overlays").iterdir() if p.is_dir())
FUNCTIONS = ("ingest", "precompute", "recommend", "deadletter")


def tool(path: Path | str) -> str:
    """Absolute path of a tool; fails (not skips) when it is missing."""
    found = Path(path) if Path(path).is_absolute() else shutil.which(str(path))
    if found is None or not Path(found).exists():
        pytest.fail(f"{path} is missing: run `bash scripts/install-deploy-tools.sh`")
    return str(found)


def run(
    args: list[str], *, cwd: Path = REPO, timeout: int = 120, env: dict | None = None, input_text: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, input=input_text)


def render(target: Path) -> str:
    result = run([tool("kubectl"), "kustomize", str(target)])
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return result.stdout


def manifest_tool(*args: str) -> subprocess.CompletedProcess:
    return run([tool(LINT_PYTHON), str(MANIFEST_TOOL), *args])


def load_docs(path: Path) -> list[dict]:
    result = manifest_tool("dump", str(path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)

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
# ../shared beside the repository: the Knative and Prometheus operator CRD schemas (see their SOURCE.md).
KNATIVE_SCHEMAS = REPO.parent / "shared" / "schemas" / "knative"
OPERATOR_SCHEMAS = REPO.parent / "shared" / "schemas" / "prometheus-operator"
SCHEMAS = f"{KNATIVE_SCHEMAS}:{OPERATOR_SCHEMAS}"
TOOLS = REPO / ".tools"
LINT_PYTHON = TOOLS / "lint-venv" / "bin" / "python"
MANIFEST_TOOL = Path(__file__).with_name("manifest_tool.py")
OVERLAYS = sorted(p.name for p in (REPO / "knative" / "overlays").iterdir() if p.is_dir())
FUNCTIONS = ("ingest", "precompute", "recommend", "deadletter")
WORKLOADS = (*FUNCTIONS, "refresh")  # each with its own store credentials and IAM role
# What the host's deploy passes to scripts/render-aws.sh (Terraform's values, the region).
HOST_SETTINGS = {
    "IMAGE_REGISTRY": "ghcr.io/example",
    "STORE_URI": "s3://example-bucket/movierec",
    "AWS_REGION": "eu-west-1",
    "KAFKA_TOPIC": "movielog7",
    "KAFKA_BOOTSTRAP_SERVERS": "k1.example.org:9092,k2.example.org:9092",
}


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


def copy_repo(target: Path) -> Path:
    """The parts of the repository that the deploy scripts read, copied (scripts write into
    knative/overlays/aws/host/, which must not land in the worktree)."""
    import shutil as _shutil

    for part in ("scripts", "knative", "monitoring"):
        _shutil.copytree(REPO / part, target / part, ignore=_shutil.ignore_patterns("host"))
    return target


def render_aws(target: Path, tag: str = "sha-0123abc", **settings: str) -> subprocess.CompletedProcess:
    """scripts/render-aws.sh in a copy of the repository under target."""
    import os

    root = copy_repo(target) if not (target / "scripts").exists() else target
    env = {**os.environ, **HOST_SETTINGS, **settings, "KUBECTL": tool("kubectl")}
    return run(["bash", str(root / "scripts" / "render-aws.sh"), tag], cwd=root, env=env)


def hcl(path: Path) -> dict:
    result = manifest_tool("hcl", str(path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)

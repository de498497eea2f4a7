"""Issue 16, items 4 and 6: the aws overlay never deploys placeholders or an unpinned image.
It renders only through scripts/render-aws.sh (the host's deploy and CI), which checks
what it renders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploytools import FUNCTIONS, REPO, copy_repo, load_docs, render_aws, run, tool


def test_the_overlay_alone_does_not_render() -> None:
    """`kubectl apply -k knative/overlays/aws` fails before anything reaches a cluster."""
    assert not (REPO / "knative" / "overlays" / "aws" / "host").exists()
    result = run([tool("kubectl"), "kustomize", str(REPO / "knative" / "overlays" / "aws")])
    assert result.returncode != 0 and "overlays/aws/host" in result.stderr


def test_no_placeholder_is_committed_in_the_aws_overlay() -> None:
    for path in (REPO / "knative" / "overlays" / "aws").rglob("*"):
        if path.is_file():
            assert "CHANGE-ME" not in path.read_text(), path


def test_rendered_for_a_host_every_image_is_pinned_and_every_setting_is_the_hosts(rendered: dict[str, Path]) -> None:
    text = rendered["aws"].read_text()
    assert "CHANGE-ME" not in text and "set-by-overlay" not in text
    images = set(re.findall(r"^ +(?:- )?image: (\S+)$", text, re.MULTILINE))
    assert images == {f"ghcr.io/example/movierec-{fn}:sha-0123abc" for fn in FUNCTIONS}


@pytest.mark.parametrize(
    ("setting", "value"),
    [("STORE_URI", ""), ("STORE_URI", "bucket/prefix"), ("AWS_REGION", "Europe"), ("KAFKA_TOPIC", "movies"),
     ("KAFKA_BOOTSTRAP_SERVERS", "kafka"), ("IMAGE_REGISTRY", "ghcr.io/Owner/"), ("KAFKA_AUTH", "yes")],
)
def test_a_missing_or_malformed_host_setting_is_refused(tmp_path: Path, setting: str, value: str) -> None:
    result = render_aws(tmp_path, **{setting: value})
    assert result.returncode != 0 and setting in result.stderr and not result.stdout


def test_a_placeholder_left_anywhere_is_refused(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    config = root / "knative" / "base" / "config.env"
    config.write_text(config.read_text() + "MOVIEREC_NEW_SETTING=CHANGE-ME-in-the-overlay\n")
    result = render_aws(root)
    assert result.returncode != 0 and "placeholders left" in result.stderr and not result.stdout


def test_an_image_the_host_does_not_pin_is_refused(tmp_path: Path) -> None:
    """A fifth image (a new function without its pin) or a foreign one never deploys."""
    root = copy_repo(tmp_path)
    job = root / "knative" / "base" / "cronjob-refresh.yaml"
    job.write_text(job.read_text().replace("image: movierec-precompute", "image: movierec-trainer"))
    result = render_aws(root)
    assert result.returncode != 0 and "movierec-trainer" in result.stderr and not result.stdout


def test_ci_renders_through_the_same_script_and_builds_every_function() -> None:
    """Item 6: CI built four images but pinned three. The pins now come from one list in
    render-aws.sh, which must name every image CI builds, every Dockerfile, every function."""
    workflow = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    (matrix,) = re.findall(r"function: \[([^\]]+)\]", workflow)
    built = {f.strip() for f in matrix.split(",")}
    (pinned,) = re.findall(r'^functions="([^"]+)"$', (REPO / "scripts" / "render-aws.sh").read_text(), re.MULTILINE)
    dockerfiles = {p.name.split(".")[0] for p in (REPO / "docker").glob("*.Dockerfile")}
    assert built == set(pinned.split()) == dockerfiles == set(FUNCTIONS)
    assert 'scripts/render-aws.sh "sha-$GITHUB_SHA"' in workflow and "kustomize edit set image" not in workflow
    # The host pulls all four without credentials: docs/deploy.md asks for all four to be public.
    deploy = (REPO / "docs" / "deploy.md").read_text()
    step1 = deploy[deploy.index("## 1."):deploy.index("## 2.")]
    assert "four packages" in step1 and all(f"movierec-{fn}" in step1 or fn in step1 for fn in FUNCTIONS)


def test_the_host_deploy_is_what_ci_checked(rendered: dict[str, Path]) -> None:
    """One rendering path: the objects CI renders are the ones the host applies."""
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in load_docs(rendered["aws"]))
    assert ("PrometheusRule", "movierec") in kinds and ("PodMonitor", "movierec") in kinds
    assert ("NetworkPolicy", "movierec-egress") in kinds

"""checkov (offline, --skip-download) on everything deployed: Terraform, the rendered
manifests, the Dockerfiles and the workflows. Zero failed checks; every skip is inline
with its reason, next to what it exempts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from deploytools import REPO, TOOLS, manifest_tool, render_aws, tool

FRAMEWORKS = ("terraform", "kubernetes", "dockerfile", "github_actions")


def render_as_deployed(tmp_path: Path) -> str:
    """The aws overlay as the host's deploy renders it (scripts/render-aws.sh)."""
    result = render_aws(tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_reports(text: str) -> list[dict]:
    """checkov prints one JSON document (an object or a list) per scanned root."""
    decoder, reports, pos = json.JSONDecoder(), [], 0
    while pos < len(text.rstrip()):
        doc, end = decoder.raw_decode(text, pos)
        reports.extend(doc if isinstance(doc, list) else [doc])
        pos = end + len(text[end:]) - len(text[end:].lstrip())
    return reports


def test_checkov_finds_nothing(tmp_path: Path, rendered: dict[str, Path]) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "aws.yaml").write_text(render_as_deployed(tmp_path / "aws"))
    (manifests / "dev.yaml").write_text(rendered["dev"].read_text())
    # checkov has pod checks (non-root, read-only root, probes, resources, ...) only for
    # core workload kinds; scan each Knative Service's pod template as a Deployment too.
    for name in ("aws", "dev"):
        result = manifest_tool("podviews", str(manifests / f"{name}.yaml"), str(manifests / f"{name}-pods.yaml"))
        assert result.returncode == 0 and int(result.stdout) >= 4, result.stdout + result.stderr

    checkov = tool(TOOLS / "checkov-venv" / "bin" / "checkov")
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    dockerfiles = sorted((REPO / "docker").glob("*.Dockerfile"))
    # One run per framework, side by side (each takes a few seconds to start).
    scans = {
        "terraform": ["--directory", "terraform"],
        "kubernetes": ["--directory", str(manifests)],
        "dockerfile": [arg for f in dockerfiles for arg in ("--file", str(f))],
        # checkov drops, silently, a workflow its bundled schema rejects; the
        # passed-checks guard below catches that.
        "github_actions": [arg for f in workflows for arg in ("--file", str(f))],
    }
    procs = {
        framework: subprocess.Popen(
            [checkov, "--skip-download", "--quiet", "--output", "json", "--framework", framework, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for framework, args in scans.items()
    }
    reports = []
    for framework, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert stdout.strip(), f"checkov {framework} printed nothing:\n{stderr}"
        reports.extend(parse_reports(stdout))
    summary: dict[str, dict] = {}
    for r in reports:
        for key in ("passed", "failed", "skipped"):
            summary.setdefault(r["check_type"], {}).setdefault(key, 0)
            summary[r["check_type"]][key] += r["summary"][key]
    failures = sorted({
        f"{r['check_type']}: {c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): {c['check_name']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    })
    assert not failures, "\n".join(failures)
    # Guard against a scan that silently looked at nothing.
    for framework in FRAMEWORKS:
        assert summary.get(framework, {}).get("passed", 0) > 0, (framework, summary)
    assert summary["kubernetes"]["passed"] >= 100, summary
    assert summary["terraform"]["passed"] >= 50, summary

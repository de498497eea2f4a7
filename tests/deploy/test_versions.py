"""Issue 16, item 1: the MicroK8s channel must carry a Kubernetes that the chosen Knative
starts on (its controllers exit on an older API server), for every pair the variables
accept; and every other place that names a version agrees with terraform/."""

from __future__ import annotations

import re

from deploytools import REPO, hcl
from test_manifests import CLOUD_INIT_VARIABLES


def validation_regex(variable: dict) -> re.Pattern:
    (rule,) = variable["validation"]
    (pattern,) = re.findall(r'regex\("(.+?)", var\.', rule["condition"])
    return re.compile(pattern.replace("\\\\", "\\"))


def variables() -> dict[str, dict]:
    return {name: body for block in hcl(REPO / "terraform" / "variables.tf")["variable"] for name, body in block.items()}


def min_kubernetes() -> dict[str, str]:
    (table,) = [block["knative_min_kubernetes"] for block in hcl(REPO / "terraform" / "main.tf")["locals"] if "knative_min_kubernetes" in block]
    return table


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


def test_every_accepted_pair_of_microk8s_channel_and_knative_release_is_compatible() -> None:
    variables_ = variables()
    channel, release = validation_regex(variables_["microk8s_channel"]), validation_regex(variables_["knative_version"])
    table = min_kubernetes()
    channels = [f"1.{m}/{risk}" for m in range(15, 60) for risk in ("stable", "candidate", "beta", "edge")] + ["latest/stable"]
    releases = [f"1.{m}.{p}" for m in range(40) for p in range(6)]
    accepted_channels = [c for c in channels if channel.search(c)]
    accepted_releases = [r for r in releases if release.search(r)]
    assert accepted_channels and accepted_releases
    assert variables_["microk8s_channel"]["default"] in accepted_channels
    assert variables_["knative_version"]["default"] in accepted_releases
    for knative in accepted_releases:
        knative_minor = ".".join(knative.split(".")[:2])
        assert knative_minor in table, f"Knative {knative} is accepted but has no minimum Kubernetes in main.tf"
        for microk8s in accepted_channels:
            kubernetes = microk8s.split("/")[0]
            assert minor(kubernetes) >= minor(table[knative_minor]), (microk8s, knative)


def test_the_version_check_would_have_caught_the_old_defaults() -> None:
    """1.32/stable with Knative 1.23 (the defaults this replaced) is refused."""
    assert not validation_regex(variables()["microk8s_channel"]).search("1.32/stable")
    assert minor("1.32") < minor(min_kubernetes()["1.23"])


def test_the_table_is_documented_with_its_source() -> None:
    readme = (REPO / "terraform" / "README.md").read_text()
    for knative, kubernetes in min_kubernetes().items():
        assert re.search(rf"^\| {re.escape(knative)} \| {re.escape(kubernetes)}(\.0)? \|", readme, re.MULTILINE), (knative, kubernetes)
    assert "DefaultKubernetesMinVersion" in readme


def test_every_place_that_names_a_version_agrees_with_terraform() -> None:
    variables_ = variables()
    knative, channel = variables_["knative_version"]["default"], variables_["microk8s_channel"]["default"]
    kubernetes = channel.split("/")[0]
    workflow = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    assert f"KNATIVE_RELEASE: knative-v{knative}\n" in workflow  # the CRD schemas CI fetches
    assert f"knative_version={knative}\n" in (REPO / "scripts" / "dev-up.sh").read_text()
    manifest_tool = (REPO / "tests" / "deploy" / "manifest_tool.py").read_text()
    assert f'KUBERNETES_VERSION = "{kubernetes}.0"' in manifest_tool  # core kinds validated at the host's version
    assert (CLOUD_INIT_VARIABLES["knative_version"], CLOUD_INIT_VARIABLES["microk8s_channel"]) == (knative, channel)

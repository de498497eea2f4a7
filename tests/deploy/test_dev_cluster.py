"""Issue 16, items 2, 3 and 11: the dev overlay's images resolve, its Kafka exists with the
topic, and its credentials are per workload, with recommend's read-only."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from deploytools import KNATIVE_SCHEMAS, REPO, WORKLOADS, load_docs, manifest_tool, render, run, tool
from test_manifests import by_kind, stub_bin

DEV_UP = REPO / "scripts" / "dev-up.sh"


def test_knative_skips_tag_resolution_for_every_registry_the_dev_overlay_uses(rendered: dict[str, Path]) -> None:
    """Knative resolves tags to digests from inside its controller, where localhost:32000 is
    not the node's registry (kserve#3689); dev-up.sh must list every registry dev images use."""
    script = DEV_UP.read_text()
    (registries,) = re.findall(r"^local_registries=(\S+)$", script, re.MULTILINE)
    patch = next(line for line in script.splitlines() if "registries-skipping-tag-resolving" in line)
    assert "config-deployment" in script[script.rindex("\n", 0, script.index(patch) - 1) - 200 : script.index(patch)]
    skipped = set(patch.split('\\"registries-skipping-tag-resolving\\":\\"')[1].split('\\"')[0].replace("$local_registries", registries).split(","))
    images = set(re.findall(r"^ +(?:- )?image: (\S+)$", rendered["dev"].read_text(), re.MULTILINE))
    assert images
    for image in images:
        registry = image.split("/")[0]
        assert registry in skipped, f"{image}: Knative would try to resolve its tag from {registry}"


def test_the_dev_kafka_is_where_the_kafka_source_looks_and_has_the_topic(tmp_path: Path, rendered: dict[str, Path]) -> None:
    kafka = tmp_path / "kafka.yaml"
    kafka.write_text(render(REPO / "knative" / "dev-kafka"))
    result = manifest_tool("validate", str(KNATIVE_SCHEMAS), str(kafka))
    assert result.returncode == 0, result.stdout + result.stderr
    docs = load_docs(kafka)
    (service,) = by_kind(docs, "Service").values()
    (broker,) = by_kind(docs, "StatefulSet").values()
    (job,) = by_kind(docs, "Job").values()
    address = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{service['spec']['ports'][0]['port']}"

    (source,) = by_kind(load_docs(rendered["dev"]), "KafkaSource").values()
    assert source["spec"]["bootstrapServers"] == [address]
    pod = broker["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == service["spec"]["ports"][0]["targetPort"])
    assert f"PLAINTEXT://:{port}" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{address}"  # clients are sent back here
    assert pod["spec"]["enableServiceLinks"] is False  # else KAFKA_PORT from the Service breaks the image's config
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--bootstrap-server") + 1] == address
    assert command[command.index("--topic") + 1] == source["spec"]["topics"][0]
    assert "--if-not-exists" in command
    # dev-up.sh applies it and waits for the topic before deploying movierec.
    script = DEV_UP.read_text()
    assert script.index('k apply -k "$root/knative/dev-kafka"') < script.index("job/create-topic") < script.index('k apply -k "$root/knative/overlays/dev"')


def test_every_workload_mounts_its_own_credentials(rendered: dict[str, Path]) -> None:
    for overlay in ("dev", "aws"):
        docs = load_docs(rendered[overlay])
        pods = {n: s["spec"]["template"]["spec"] for n, s in by_kind(docs, "Service", "serving.knative.dev/").items()}
        pods |= {n: j["spec"]["jobTemplate"]["spec"]["template"]["spec"] for n, j in by_kind(docs, "CronJob").items()}
        assert set(pods) == set(WORKLOADS)
        for name, pod in pods.items():
            secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
            assert secrets == [f"movierec-aws-{name}"], (overlay, name)
            env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
            mount = next(m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] == "aws-credentials")
            assert env["AWS_CONFIG_FILE"] == f"{mount}/config" and env["AWS_EC2_METADATA_DISABLED"] == "true"
        assert "/.aws/credentials" not in rendered[overlay].read_text()


def test_dev_credentials_come_from_two_dedicated_profiles_and_recommend_only_reads(tmp_path: Path) -> None:
    """scripts/dev-credentials.sh with `aws configure get` and kubectl stubbed: one Secret per
    workload, one [default] profile in each, recommend's from the read-only profile."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env = stub_bin(tmp_path / "bin", {
        # aws configure get aws_access_key_id --profile P  ->  P-aws_access_key_id
        "aws": 'echo "$5-$3"',
        # keep each Secret's config file as secrets/<name>
        "kubectl": f'''case "$*" in *"create secret"*) for a in "$@"; do case $a in --from-file=config=*) cp "${{a#--from-file=config=}}" {secrets}/"$6";; esac; done;; esac
cat > /dev/null; exit 0''',
    })
    result = subprocess.run(["bash", str(REPO / "scripts" / "dev-credentials.sh")], capture_output=True, text=True,
                            env={**env, "KUBECTL": "kubectl"}, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in secrets.iterdir()} == {f"movierec-aws-{w}" for w in WORKLOADS}
    for workload in WORKLOADS:
        text = (secrets / f"movierec-aws-{workload}").read_text()
        profile = "movierec-dev-reader" if workload == "recommend" else "movierec-dev-writer"
        assert text == f"[default]\naws_access_key_id = {profile}-aws_access_key_id\naws_secret_access_key = {profile}-aws_secret_access_key\n"


def test_dev_up_script_passes_shellcheck_and_brings_up_what_the_dev_overlay_needs() -> None:
    script = DEV_UP.read_text()
    for step in ("microk8s enable dns registry", "serving-core.yaml", "kourier.yaml", "eventing-core.yaml",
                 "eventing-kafka-source.yaml", "scripts/dev-credentials.sh", "knative/overlays/dev"):
        assert step in script, step
    assert run([tool(REPO / ".tools" / "lint-venv" / "bin" / "shellcheck"), str(DEV_UP)]).returncode == 0
    assert os.access(DEV_UP, os.X_OK)

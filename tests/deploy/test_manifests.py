"""knative/: every overlay renders, every object validates against its real schema,
and the properties SPEC §7 and issue 6 ask for hold in what is deployed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from deploytools import (
    FUNCTIONS,
    HOST_SETTINGS,
    KNATIVE_SCHEMAS,
    OPERATOR_SCHEMAS,
    OVERLAYS,
    REPO,
    SCHEMAS,
    copy_repo,
    load_docs,
    manifest_tool,
    render,
    run,
    tool,
)


def by_kind(docs: list[dict], kind: str, group: str = "") -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == kind and d["apiVersion"].startswith(group)
    }


def test_overlays_exist() -> None:
    assert {"dev", "aws"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_match_their_schemas(rendered: dict[str, Path], overlay: str) -> None:
    for schemas in (KNATIVE_SCHEMAS, OPERATOR_SCHEMAS):
        assert (schemas / "SOURCE.md").exists(), f"CRD schemas not found at {schemas}"
    result = manifest_tool("validate", SCHEMAS, str(rendered[overlay]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_base_resource_is_listed() -> None:
    """One resource per file (STYLE.md): a file left out of kustomization.yaml would
    silently never be deployed."""
    base = REPO / "knative" / "base"
    text = (base / "kustomization.yaml").read_text()
    resources = text[text.index("resources:") : text.index("configMapGenerator:")]
    listed = set(re.findall(r"^  - (\S+\.yaml)$", resources, re.MULTILINE))
    on_disk = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml", "kustomizeconfig.yaml"}
    assert on_disk == listed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_functions_are_deployed_as_issue_6_asks(rendered: dict[str, Path], overlay: str) -> None:
    docs = load_docs(rendered[overlay])
    services = by_kind(docs, "Service", "serving.knative.dev/")
    config_maps = by_kind(docs, "ConfigMap")
    accounts = by_kind(docs, "ServiceAccount")
    assert set(FUNCTIONS) <= set(services)
    for name, svc in services.items():
        template = svc["spec"]["template"]
        spec, annotations = template["spec"], template["metadata"]["annotations"]
        assert spec["serviceAccountName"] in accounts, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in config_maps, (name, ref)
        if name in FUNCTIONS:
            (container,) = spec["containers"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert annotations["prometheus.io/scrape"] == "true", name
            assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"]), name
            store = config_maps[container["envFrom"][0]["configMapRef"]["name"]]["data"]["MOVIEREC_STORE"]
            assert store.startswith("s3://"), (name, store)

    min_scale = {n: int(s["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]) for n, s in services.items()}
    assert min_scale["recommend"] >= 1, "recommend must not cold-start (1-10 s vs a 600-800 ms budget)"
    assert min_scale["ingest"] == 0 and min_scale["precompute"] == 0
    assert services["precompute"]["spec"]["template"]["spec"]["containerConcurrency"] == 1
    # Only recommend is reachable from outside the cluster.
    for name in ("ingest", "precompute"):
        assert services[name]["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    assert "networking.knative.dev/visibility" not in services["recommend"]["metadata"].get("labels", {})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_events_reach_the_right_function(rendered: dict[str, Path], overlay: str) -> None:
    docs = load_docs(rendered[overlay])
    services = by_kind(docs, "Service", "serving.knative.dev/")
    brokers = by_kind(docs, "Broker")
    routes = {}
    for trigger in by_kind(docs, "Trigger").values():
        assert trigger["spec"]["broker"] in brokers
        routes[trigger["spec"]["filter"]["attributes"]["type"]] = trigger["spec"]["subscriber"]["ref"]["name"]
    assert routes == {
        "movierec.stream.line.v1": "ingest",
        "movierec.precompute.requested.v1": "precompute",
    }

    (source,) = by_kind(docs, "KafkaSource").values()
    assert source["apiVersion"] == "sources.knative.dev/v1"
    assert source["spec"]["sink"]["ref"]["name"] == "ingest"
    (topic,) = source["spec"]["topics"]
    assert re.fullmatch(r"movielog\d+", topic), topic
    assert not any("CHANGE-ME" in s for s in source["spec"]["bootstrapServers"])
    delivery = source["spec"]["delivery"]
    assert delivery["retry"] >= 3 and delivery["backoffPolicy"] in {"exponential", "linear"}
    assert delivery["backoffDelay"].startswith("PT")
    dead_letters = [delivery["deadLetterSink"]] + [b["spec"]["delivery"]["deadLetterSink"] for b in brokers.values()]
    for sink in dead_letters:
        assert sink["ref"]["kind"] == "Service" and sink["ref"]["name"] in services


def test_kafka_topic_is_set_by_the_overlay(tmp_path: Path) -> None:
    """N of movielog<N> is one value in an overlay (the kafka-settings component)."""
    (tmp_path / "knative").symlink_to(REPO / "knative")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        """resources: [../knative/overlays/dev]
components: [../knative/components/kafka-settings]
configMapGenerator:
  - {name: movierec-kafka, behavior: merge, literals: [topic=movielog42]}
"""
    )
    assert "  topics:\n  - movielog42\n" in render(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dead_letters_are_kept_by_our_function_from_its_own_image(rendered: dict[str, Path], overlay: str) -> None:
    """SPEC §7: one image per function; the sink writes to the same store as ingest."""
    services = by_kind(load_docs(rendered[overlay]), "Service", "serving.knative.dev/")
    (container,) = services["deadletter"]["spec"]["template"]["spec"]["containers"]
    ingest = services["ingest"]["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"(\S+/)?movierec-deadletter(:[\w.-]+)?", container["image"]) and "command" not in container
    assert container["envFrom"] == ingest["envFrom"]  # same store
    dockerfile = (REPO / "docker/deadletter.Dockerfile").read_text()
    assert 'CMD ["functions-framework", "--source", "functions/deadletter/main.py", "--target", "deadletter"]' in dockerfile
    assert "functions/deadletter" not in (REPO / "docker/ingest.Dockerfile").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_daily_refresh_job_runs_the_batch_steps_through_the_broker(rendered: dict[str, Path], overlay: str) -> None:
    docs = load_docs(rendered[overlay])
    (job,) = by_kind(docs, "CronJob", "batch/").values()
    assert job["spec"]["concurrencyPolicy"] == "Forbid"  # two refreshes would publish over each other
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    precompute = by_kind(docs, "Service", "serving.knative.dev/")["precompute"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == precompute["image"] and container["envFrom"] == precompute["envFrom"]
    assert container["command"] == ["movierec", "refresh"]
    (broker,) = by_kind(docs, "Broker").values()
    sink = next(e["value"] for e in container["env"] if e["name"] == "K_SINK")
    assert sink == f"http://broker-ingress.knative-eventing.svc.cluster.local/{broker['metadata']['namespace']}/{broker['metadata']['name']}"


def test_no_credentials_in_manifests(rendered: dict[str, Path]) -> None:
    for path in rendered.values():
        text = path.read_text()
        assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)\s*[:=]", text), path
        assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), path
        assert "kind: Secret" not in text, path


def host_files(tmp_path: Path, **variables: str) -> dict[str, Path]:
    """The files cloud-init writes on the host (path -> extracted copy)."""
    cloud_init = tmp_path / "cloud-init.yaml"
    cloud_init.write_text(render_cloud_init(**variables))
    listing = json.loads(manifest_tool("cloud-init", str(cloud_init), str(tmp_path / "files")).stdout)
    return {f["path"]: Path(f["file"]) for f in listing["files"]}


def stub_bin(directory: Path, stubs: dict[str, str]) -> dict[str, str]:
    directory.mkdir()
    for name, body in stubs.items():
        (directory / name).write_text(f"#!/bin/bash\n{body}\n")
        (directory / name).chmod(0o755)
    return {**os.environ, "PATH": f"{directory}:{os.environ['PATH']}"}


def test_host_deploy_renders_checks_and_applies_with_credentials_first(tmp_path: Path) -> None:
    """Runs the host's /usr/local/bin/movierec-deploy from the rendered cloud-init against a
    copy of the repository, with git, curl, helm and microk8s stubbed, and checks the order
    of what it does and what it applies."""
    files = host_files(tmp_path)
    root = tmp_path / "host"
    src = copy_repo(root / "src")
    (src / ".git").mkdir()
    script = files["/usr/local/bin/movierec-deploy"]
    text = script.read_text().replace("/etc/movierec/deploy.env", str(files["/etc/movierec/deploy.env"]))
    text = text.replace("/opt/movierec", str(root)).replace("/usr/local/sbin/movierec-credentials", "movierec-credentials")
    script.write_text(text)

    log = tmp_path / "log"
    applied = tmp_path / "applied.yaml"
    kubectl = tool("kubectl")
    env = stub_bin(tmp_path / "bin", {
        "git": "exit 0",
        "curl": 'case "$*" in *api/token*) echo token;; *) echo eu-west-1;; esac',
        # `microk8s kubectl kustomize` renders for real; `apply -f FILE` keeps FILE.
        "microk8s": f'echo "microk8s $*" >> {log}\n'
        f'[ "$2" = kustomize ] && exec {kubectl} "${{@:2}}"\n'
        f'[ "$2 $3" = "apply -f" ] && [ "$4" != - ] && cp "$4" {applied}\n'
        "cat > /dev/null; exit 0",
        "movierec-credentials": f'echo "mint credentials" >> {log}',
        "helm": f'echo "helm $*" >> {log}',
    })
    env["HELM"] = "helm"
    result = subprocess.run(["bash", str(script), "0123abc", "sha-0123abc"], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    steps = log.read_text().splitlines()
    order = [next(i for i, line in enumerate(steps) if marker in line) for marker in
             ("kustomize", "helm", "create namespace movierec", "mint credentials", f"apply -f {root}")]
    assert order == sorted(order), steps  # render (and check) first; the Secrets exist before the pods
    docs = load_docs(applied)
    services = by_kind(docs, "Service", "serving.knative.dev/")
    for fn in FUNCTIONS:
        assert services[fn]["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/example/movierec-{fn}:sha-0123abc"
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("movierec-config"))
    assert config["MOVIEREC_STORE"] == HOST_SETTINGS["STORE_URI"]
    assert config["AWS_REGION"] == "eu-west-1"
    (source,) = by_kind(docs, "KafkaSource").values()
    assert source["spec"]["topics"] == ["movielog7"]
    assert source["spec"]["bootstrapServers"] == ["k1.example.org:9092,k2.example.org:9092"]
    assert manifest_tool("validate", SCHEMAS, str(applied)).returncode == 0
    assert not (REPO / "knative" / "overlays" / "aws" / "host").exists()


CLOUD_INIT_VARIABLES = {
    "microk8s_channel": "1.34/stable",
    "knative_version": "1.23.0",
    "public_ip": "198.51.100.7",
    "repository_url": "https://github.com/example/movierec.git",
    "git_ref": "main",
    "image_registry": HOST_SETTINGS["IMAGE_REGISTRY"],
    "image_tag": "main",
    "store_uri": HOST_SETTINGS["STORE_URI"],
    "kafka_topic": HOST_SETTINGS["KAFKA_TOPIC"],
    "kafka_bootstrap_servers": HOST_SETTINGS["KAFKA_BOOTSTRAP_SERVERS"],
    "kafka_auth": False,
    "tls_email": "",
    "workload_roles": " ".join(f"{w}=arn:aws:iam::123456789012:role/movierec-{w}-x" for w in ("deadletter", "ingest", "precompute", "recommend", "refresh")),
}


def render_cloud_init(**variables) -> str:
    """terraform/templates/cloud-init.yaml.tftpl rendered by terraform itself
    (`terraform console` needs no provider)."""
    variables = {**CLOUD_INIT_VARIABLES, **variables}
    template = REPO / "terraform" / "templates" / "cloud-init.yaml.tftpl"
    expression = f"jsonencode(templatefile({json.dumps(str(template))}, {json.dumps(variables)}))"
    result = run([tool("terraform"), "console"], cwd=Path("/"), env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"}, input_text=expression)
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))

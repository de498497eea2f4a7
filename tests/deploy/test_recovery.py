"""Issue 16, items 7, 8, 16 and 17: the smaller things a real deploy trips over."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

from deploytools import REPO, SCHEMAS, hcl, load_docs, manifest_tool, render_aws
from test_manifests import by_kind, stub_bin


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386, what `kubectl patch --type merge` sends."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def test_the_documented_recovery_creates_a_new_recommend_revision(tmp_path: Path, rendered: dict[str, Path]) -> None:
    """Item 8: re-applying the same spec makes no revision; the documented patch changes the
    template (Knative's trigger for a revision), run through a real shell as written."""
    deploy = (REPO / "docs" / "deploy.md").read_text()
    (command,) = re.findall(r"^(sudo microk8s kubectl -n movierec patch ksvc recommend .*\\\n.*)$", deploy, re.MULTILINE)
    args = tmp_path / "args"
    env = stub_bin(tmp_path / "bin", {"sudo": f'printf "%s\\n" "$@" > {args}'})
    result = subprocess.run(["bash", "-c", command.replace("\\\n", " ")], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    argv = args.read_text().splitlines()
    assert argv[:8] == ["microk8s", "kubectl", "-n", "movierec", "patch", "ksvc", "recommend", "--type"] and argv[8] == "merge"
    patch = json.loads(argv[argv.index("-p") + 1])

    (service,) = [s for n, s in by_kind(load_docs(rendered["aws"]), "Service", "serving.knative.dev/").items() if n == "recommend"]
    patched = merge_patch(copy.deepcopy(service), patch)
    assert patched["spec"]["template"] != service["spec"]["template"]
    assert merge_patch(copy.deepcopy(service), {}) == service  # re-applying changes nothing
    (stamp,) = [v for k, v in patched["spec"]["template"]["metadata"]["annotations"].items() if k.startswith("movierec/")]
    assert re.fullmatch(r"\d{8}T\d{6}Z", stamp)  # a fresh value each time it is run
    valid = tmp_path / "patched.json"
    valid.write_text(json.dumps(patched))
    assert manifest_tool("validate", SCHEMAS, str(valid)).returncode == 0


def test_a_newer_ubuntu_image_does_not_replace_the_host() -> None:
    """Item 7: data.aws_ami with most_recent and no ignore_changes replaces the host on the
    first apply after Canonical publishes."""
    main = hcl(REPO / "terraform" / "main.tf")
    (ami,) = [body for block in main["data"] for kind, named in block.items() if kind == "aws_ami" for body in named.values()]
    (instance,) = [body for block in main["resource"] for kind, named in block.items() if kind == "aws_instance" for body in named.values()]
    assert ami["most_recent"] is True
    (lifecycle,) = instance["lifecycle"]
    assert "ami" in str(lifecycle["ignore_changes"])
    assert "precondition" in lifecycle  # and the Kubernetes/Knative pair is checked at plan time


def test_outputs_use_the_provider_v6_bucket_region() -> None:
    """Item 16: on provider v6, aws_s3_bucket's region is the provider's; bucket_region is the bucket's."""
    outputs = (REPO / "terraform" / "outputs.tf").read_text()
    assert "aws_s3_bucket.store.bucket_region" in outputs and "aws_s3_bucket.store.region" not in outputs
    assert '"~> 6.' in (REPO / "terraform" / "versions.tf").read_text()


def test_kafka_sasl_and_tls_from_a_secret(tmp_path: Path) -> None:
    """Item 17: KAFKA_AUTH=true (Terraform's kafka_auth) adds SASL over TLS to the
    KafkaSource, from the Secret whose keys docs/deploy.md tells you to create."""
    result = render_aws(tmp_path, KAFKA_AUTH="true")
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout)
    check = manifest_tool("validate", SCHEMAS, str(rendered))
    assert check.returncode == 0, check.stdout
    (source,) = by_kind(load_docs(rendered), "KafkaSource").values()
    net = source["spec"]["net"]
    assert net["sasl"]["enable"] is True and net["tls"]["enable"] is True
    refs = {field: net["sasl"][field]["secretKeyRef"] for field in ("type", "user", "password")}
    assert {r["name"] for r in refs.values()} == {"movierec-kafka-auth"}
    deploy = (REPO / "docs" / "deploy.md").read_text()
    create = deploy[deploy.index("create secret generic movierec-kafka-auth"):].split("\n\n")[0]
    assert set(re.findall(r"--from-literal=(\w+)=", create)) == {r["key"] for r in refs.values()}
    # Off by default: no net settings, so a plain broker keeps working.
    plain = render_aws(tmp_path / "plain")
    assert "sasl" not in plain.stdout
    cloud_init = (REPO / "terraform" / "templates" / "cloud-init.yaml.tftpl").read_text()
    assert "KAFKA_AUTH=${kafka_auth}" in cloud_init and "kafka_auth              = var.kafka_auth" in (REPO / "terraform" / "main.tf").read_text()


def test_what_docs_deploy_md_asks_of_the_example_exists() -> None:
    """docs/deploy.md runs terraform in examples/complete: every output it reads and every
    variable it tells you to set must exist there (and reach the module)."""
    deploy = (REPO / "docs" / "deploy.md").read_text()
    example = REPO / "terraform" / "examples" / "complete"
    outputs = {name for block in hcl(example / "outputs.tf")["output"] for name in block}
    assert set(re.findall(r"terraform output -raw (\w+)", deploy)) <= outputs
    variables = {name for block in hcl(example / "variables.tf")["variable"] for name in block}
    main = (example / "main.tf").read_text()
    for name in re.findall(r"Apply with `(\w+) = ", deploy):
        assert name in variables and re.search(rf"\n  {name} += var\.{name}\n", main), name

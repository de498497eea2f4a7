"""Issue 16, items 9, 10 and 15: least privilege on one host without IRSA.

Each workload's store policy is rendered by terraform itself from terraform/iam.tf's matrix
and its template, then evaluated here (Allow statements, action and resource wildcards)
against the function x action x prefix matrix the store's code needs: recommend only reads,
ingest never deletes, only the refresh job deletes, and only superseded event-log files."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from deploytools import REPO, WORKLOADS, hcl, run, tool
from test_manifests import host_files, stub_bin

BUCKET = "arn:aws:s3:::example-bucket"
PREFIX = "movierec"
TEMPLATE = REPO / "terraform" / "templates" / "store-policy.json.tftpl"
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
# One real key of each kind the code writes (SPEC §4; src/movierec, pipelines/).
KEYS = {
    "events": "events/kind=watch/date=2026-12-07/0a1b2c.parquet",
    "snapshot data": "snapshots/s1/interactions.parquet",
    "snapshot manifest": "snapshots/s1/manifest.json",
    "snapshot quality": "snapshots/s1/quality.json",
    "models": "models/20261207T033000Z-abc/card.json",
    "recs shard": "recs/r1/part-0-of-8.parquet",
    "recs CURRENT": "recs/CURRENT",
    "deadletter": "deadletter/date=2026-12-07/ff00.json",
}
R, W, D = "s3:GetObject", "s3:PutObject", "s3:DeleteObject"
EXPECTED = {
    "ingest": {"events": {W}},
    "recommend": {"snapshot manifest": {R}, "snapshot quality": {R}, "models": {R}, "recs shard": {R}, "recs CURRENT": {R}},
    "precompute": {"snapshot data": {R}, "snapshot manifest": {R}, "snapshot quality": {R}, "models": {R},
                   "recs shard": {R, W}, "recs CURRENT": {R, W}},
    "deadletter": {"deadletter": {W}},
    "refresh": {"events": {R, W, D}, **{k: {R, W} for k in KEYS if k.startswith(("snapshot", "models", "recs"))}},
}


def store_access() -> dict[str, dict[str, list[str]]]:
    (access,) = [b["store_access"] for b in hcl(REPO / "terraform" / "iam.tf")["locals"] if "store_access" in b]
    return access


def rendered_policy(access: dict) -> dict:
    """The policy terraform renders for one workload (`terraform console` needs no provider)."""
    variables = {"bucket_arn": BUCKET, "prefix": PREFIX, "access": access}
    expression = f"jsonencode(templatefile({json.dumps(str(TEMPLATE))}, {json.dumps(variables)}))"
    result = run([tool("terraform"), "console"], cwd=Path("/"), env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"}, input_text=expression)
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)
    while isinstance(policy, str):  # the console quotes the encoded string once more
        policy = json.loads(policy)
    return policy


def allows(policy: dict, action: str, resource: str) -> bool:
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement and "NotAction" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if any(fnmatch.fnmatchcase(action, a) for a in actions) and any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False


@pytest.fixture(scope="module")
def policies() -> dict[str, dict]:
    return {workload: rendered_policy(access) for workload, access in store_access().items()}


def test_every_workload_has_a_role_and_nothing_else_does(policies: dict[str, dict]) -> None:
    assert set(policies) == set(WORKLOADS)


def test_function_action_prefix_matrix(policies: dict[str, dict]) -> None:
    for workload, policy in policies.items():
        granted = {kind: {a for a in OBJECT_ACTIONS if allows(policy, a, f"{BUCKET}/{PREFIX}/{key}")} for kind, key in KEYS.items()}
        expected = {kind: EXPECTED[workload].get(kind, set()) for kind in KEYS}
        assert granted == expected, workload
        # Outside the store prefix, and on the bucket itself, nothing but listing.
        for action in OBJECT_ACTIONS:
            assert not allows(policy, action, f"{BUCKET}/other/{KEYS['events']}"), (workload, action)
            assert not allows(policy, action, f"{BUCKET}/{KEYS['events']}"), (workload, action)
        assert allows(policy, "s3:ListBucket", BUCKET)  # 404, not 403, for a missing key
        for action in ("s3:PutBucketPolicy", "s3:DeleteBucket", "s3:GetObjectVersion", "s3:DeleteObjectVersion",
                       "s3:AbortMultipartUpload", "s3:PutObjectAcl", "s3:*"):
            assert not allows(policy, action, BUCKET) and not allows(policy, action, f"{BUCKET}/{PREFIX}/{KEYS['recs CURRENT']}"), action


def test_only_the_refresh_job_deletes_and_recommend_writes_nothing(policies: dict[str, dict]) -> None:
    """The three rules the issue names, stated on their own."""
    for workload, policy in policies.items():
        for key in KEYS.values():
            resource = f"{BUCKET}/{PREFIX}/{key}"
            if workload != "refresh":
                assert not allows(policy, "s3:DeleteObject", resource), (workload, key)
            if workload == "recommend":
                assert not allows(policy, "s3:PutObject", resource), key
    assert not allows(policies["refresh"], "s3:DeleteObject", f"{BUCKET}/{PREFIX}/{KEYS['models']}")


def test_the_code_calls_no_s3_action_the_policies_do_not_name(policies: dict[str, dict]) -> None:
    """What S3Store calls maps onto the granted actions; no multipart, no versions."""
    source = (REPO / "src" / "movierec" / "store.py").read_text()
    called = set(re.findall(r"_s3\.(\w+)", source))
    iam = {"put_object": "s3:PutObject", "get_object": "s3:GetObject", "head_object": "s3:GetObject",
           "list_objects_v2": "s3:ListBucket", "delete_object": "s3:DeleteObject",
           "delete_objects": "s3:DeleteObject"}  # a multi-object delete is authorised per key as DeleteObject
    assert called <= set(iam), called - set(iam)
    named = {a for p in policies.values() for s in p["Statement"] for a in s["Action"]}
    assert {iam[c] for c in called} <= named <= {"s3:ListBucket", *OBJECT_ACTIONS}


def test_the_host_can_only_mint_and_pods_cannot_reach_imds(rendered: dict[str, Path]) -> None:
    iam = hcl(REPO / "terraform" / "iam.tf")
    documents = {name: body for block in iam["data"] for kind, named in block.items() if kind == "aws_iam_policy_document" for name, body in named.items()}
    (statement,) = documents["host_mints_workload_credentials"]["statement"]
    assert statement["actions"] == ["sts:AssumeRole"] and "aws_iam_role.workload" in str(statement["resources"])
    host_policies = [body for block in iam["resource"] for kind, named in block.items() if kind == "aws_iam_role_policy"
                     for body in named.values() if "aws_iam_role.host" in str(body["role"])]
    assert len(host_policies) == 1 and "host_mints_workload_credentials" in str(host_policies[0]["policy"])
    main = (REPO / "terraform" / "main.tf").read_text()
    assert re.search(r"http_put_response_hop_limit = 1\n", main)  # a pod is one hop further
    for overlay in ("aws", "dev"):
        text = rendered[overlay].read_text()
        assert "except:\n        - 169.254.169.254/32" in text, overlay


def test_the_host_mints_each_workload_its_own_roles_credentials(tmp_path: Path) -> None:
    """/usr/local/sbin/movierec-credentials from the rendered cloud-init, aws and microk8s
    stubbed: one Secret per workload, from that workload's role, in the format the pods'
    AWS_CONFIG_FILE (components/store-credentials) expects."""
    files = host_files(tmp_path)
    script = files["/usr/local/sbin/movierec-credentials"]
    script.write_text(script.read_text().replace("/etc/movierec/deploy.env", str(files["/etc/movierec/deploy.env"])))
    made = tmp_path / "made"
    made.mkdir()
    env = stub_bin(tmp_path / "bin", {
        "curl": 'case "$*" in *api/token*) echo token;; *) echo eu-west-1;; esac',
        # assume-role (in the host's region) answers with the role in the key id, in the shape --query asks for
        "aws": '[ "$AWS_REGION" = eu-west-1 ] || exit 3\n'
               'echo "{\\"Version\\": 1, \\"AccessKeyId\\": \\"$4\\", \\"SecretAccessKey\\": \\"s\\", \\"SessionToken\\": \\"t\\", \\"Expiration\\": \\"2026-12-07T14:00:00Z\\"}"',
        "microk8s": f'''case "$*" in *"create secret"*) d={made}/"$7"; mkdir -p "$d"
  for a in "$@"; do case $a in --from-file=*) f=${{a#--from-file=}}; cp "${{f#*=}}" "$d/${{f%%=*}}";; esac; done;; esac
cat > /dev/null; exit 0''',
    })
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in made.iterdir()} == {f"movierec-aws-{w}" for w in WORKLOADS}
    for workload in WORKLOADS:
        secret = made / f"movierec-aws-{workload}"
        credentials = json.loads((secret / "credentials.json").read_text())
        assert credentials["AccessKeyId"] == f"arn:aws:iam::123456789012:role/movierec-{workload}-x"
        assert credentials["Version"] == 1 and credentials["Expiration"]  # refreshable: the SDK re-runs the process
        assert (secret / "config").read_text() == (
            "[default]\ncredential_process = cat /var/run/secrets/movierec/aws/credentials.json\n")
    component = (REPO / "knative" / "components" / "store-credentials" / "kustomization.yaml").read_text()
    assert component.count("mountPath: /var/run/secrets/movierec/aws\n") == len(WORKLOADS)
    assert component.count("value: /var/run/secrets/movierec/aws/config\n") == len(WORKLOADS)
    timer = files["/etc/systemd/system/movierec-credentials.timer"].read_text()
    assert "OnUnitActiveSec=20min" in timer and "OnBootSec=2min" in timer  # well inside the hour a session lasts
    assert 'workload_roles          = join(" ", [for w in sort(keys(aws_iam_role.workload))' in (REPO / "terraform" / "main.tf").read_text()


def test_ci_may_run_only_the_deploy_document_with_a_commit_id() -> None:
    document = json.loads((REPO / "terraform" / "templates" / "deploy-document.json").read_text())
    (name,) = document["parameters"]
    pattern = re.compile(document["parameters"][name]["allowedPattern"])
    assert pattern.search("0123456789abcdef0123456789abcdef01234567")
    for bad in ("main", "0123abc", "0123456789ABCDEF0123456789ABCDEF01234567", "0123456789abcdef0123456789abcdef0123456; reboot",
                "$(reboot)", "0123456789abcdef0123456789abcdef01234567 x"):
        assert not pattern.search(bad), bad
    (step,) = document["mainSteps"]
    assert step["action"] == "aws:runShellScript"
    assert step["inputs"]["runCommand"] == [f"/usr/local/bin/movierec-deploy {{{{ {name} }}}} sha-{{{{ {name} }}}}"]
    iam = (REPO / "terraform" / "iam.tf").read_text()
    send = iam[iam.index('sid     = "RunDeployOnHost"'):]
    send = send[:send.index("}")]
    assert "aws_ssm_document.deploy.arn" in send and "AWS-RunShellScript" not in iam
    workflow = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    assert "AWS-RunShellScript" not in workflow and "|| true" not in workflow
    assert f'--parameters "{name}=$commit"' in (REPO / "scripts" / "ssm-deploy.sh").read_text()
    assert "sha-${{ github.sha }}" in workflow  # the tag the document deploys is the one CI pushes


@pytest.mark.parametrize(
    ("statuses", "ok"),
    [(["missing", "Pending", "InProgress", "InProgress", "Success"], True),
     (["InProgress", "Failed"], False),
     (["InProgress", "TimedOut"], False),
     (["InProgress"] * 10, False)],  # never final within POLL_LIMIT
)
def test_the_ci_deploy_waits_for_a_final_status(tmp_path: Path, statuses: list[str], ok: bool) -> None:
    """Item 15: `ssm wait ... || true` could read InProgress and pass; this polls."""
    (tmp_path / "statuses").write_text("\n".join(statuses) + "\n")
    env = stub_bin(tmp_path / "bin", {
        "aws": f'''case "$*" in
  *send-command*) echo cmd-1;;
  *"--query Status"*) s=$(head -n 1 {tmp_path}/statuses); sed -i 1d {tmp_path}/statuses
    [ -z "$s" ] && s=InProgress; [ "$s" = missing ] && exit 254; echo "$s";;
  *) echo output;;
esac''',
    })
    env |= {"POLL_SECONDS": "0", "POLL_LIMIT": "6"}
    result = subprocess.run(["bash", str(REPO / "scripts" / "ssm-deploy.sh"), "i-0abc", "movierec-deploy", "0" * 40],
                            capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr

"""Issue 16, item 5: every pod the aws overlay can run at once, at max-scale, fits the host.

CPU: the requests (what the scheduler reserves) of every pod at max-scale, Knative's
queue-proxy beside each function pod, the refresh job at its two CPUs of training, the
monitoring stack's, and MicroK8s' and Knative's own, must fit the instance's vCPUs.
Memory: the limits (what the pods may really take) must fit, so that training growing to its
limit never gets recommend OOM-killed. Checked for every instance type variables.tf accepts."""

from __future__ import annotations

import re
from pathlib import Path

from deploytools import REPO, hcl, load_docs
from test_manifests import by_kind

# AWS's published sizes of the types variables.tf accepts (vCPU, GiB).
INSTANCE_SIZES = {
    "t3.2xlarge": (8, 32), "t3a.2xlarge": (8, 32), "m6i.2xlarge": (8, 32), "m6a.2xlarge": (8, 32),
    "m7i.2xlarge": (8, 32), "m7a.2xlarge": (8, 32), "m6i.4xlarge": (16, 64), "m7i.4xlarge": (16, 64),
}
# MicroK8s (Calico, CoreDNS), Knative Serving with Kourier, Eventing with the channel broker,
# the Kafka source: an estimate from their release manifests' requests plus headroom, not
# a measurement (docs/deploy.md says how to read the real figure off the host).
SYSTEM_CPU, SYSTEM_MEMORY_MI = 2.5, 4096
# Knative's queue-proxy: config-deployment's default CPU request; no memory limit, so a budget.
QUEUE_PROXY_CPU, QUEUE_PROXY_MEMORY_MI = 0.025, 50
# The refresh job trains with two threads (issue 14 sizes it at two CPUs and 8 GiB).
REFRESH_CPU, REFRESH_MEMORY_MI = 2.0, 8192
KNATIVE_MIN_CPUS = 6  # Knative's guidance for a single-node cluster


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if str(quantity).endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(Mi|Gi)?", str(quantity)).groups()
    return float(number) * {"Mi": 1, "Gi": 1024, None: 1 / 2**20}[unit]


def allowed_instance_types() -> list[str]:
    (block,) = [b["instance_type"] for b in hcl(REPO / "terraform" / "variables.tf")["variable"] if "instance_type" in b]
    (rule,) = block["validation"]
    return re.findall(r'"([a-z0-9]+\.[a-z0-9]+)"', rule["condition"].split("], var.instance_type")[0])


def workload_demand(rendered_aws: Path) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """(CPU requested, memory limit in MiB) of every movierec pod at max-scale."""
    docs = load_docs(rendered_aws)
    rows: dict[str, tuple[float, float]] = {}
    for name, service in by_kind(docs, "Service", "serving.knative.dev/").items():
        template = service["spec"]["template"]
        pods = int(template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"])
        (container,) = template["spec"]["containers"]
        resources = container["resources"]
        rows[name] = (pods * (cpu(resources["requests"]["cpu"]) + QUEUE_PROXY_CPU),
                      pods * (mebibytes(resources["limits"]["memory"]) + QUEUE_PROXY_MEMORY_MI))
    (job,) = by_kind(docs, "CronJob").values()
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"  # one refresh pod at a time
    resources = container["resources"]
    assert mebibytes(resources["limits"]["memory"]) >= REFRESH_MEMORY_MI
    rows["refresh"] = (max(cpu(resources["requests"]["cpu"]), REFRESH_CPU), mebibytes(resources["limits"]["memory"]))
    return sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values()), rows


def monitoring_demand() -> tuple[float, float]:
    (values,) = load_docs(REPO / "monitoring" / "kube-prometheus-stack.values.yaml")
    parts = [values["alertmanager"]["alertmanagerSpec"], values["prometheus"]["prometheusSpec"], values["prometheusOperator"],
             values["kube-state-metrics"], values["prometheus-node-exporter"], values["grafana"]]
    return (sum(cpu(p["resources"]["requests"]["cpu"]) for p in parts),
            sum(mebibytes(p["resources"]["limits"]["memory"]) for p in parts))


def test_every_pod_at_max_scale_fits_every_accepted_instance_type(rendered: dict[str, Path]) -> None:
    types = allowed_instance_types()
    assert types and set(types) <= set(INSTANCE_SIZES), set(types) - set(INSTANCE_SIZES)
    movierec_cpu, movierec_memory, rows = workload_demand(rendered["aws"])
    monitoring_cpu, monitoring_memory = monitoring_demand()
    cpu_needed = movierec_cpu + monitoring_cpu + SYSTEM_CPU
    memory_needed = movierec_memory + monitoring_memory + SYSTEM_MEMORY_MI
    for instance in types:
        vcpus, gib = INSTANCE_SIZES[instance]
        allocatable_memory = gib * 1024 * 0.95 - 100  # the kernel's share, kubelet's eviction threshold
        assert vcpus >= KNATIVE_MIN_CPUS, instance
        assert cpu_needed <= vcpus, f"{instance}: {cpu_needed:.2f} CPUs requested of {vcpus}: {rows}"
        assert memory_needed <= allocatable_memory, f"{instance}: {memory_needed:.0f} MiB limits of {allocatable_memory:.0f}: {rows}"


def test_the_check_would_have_caught_the_old_sizing(rendered: dict[str, Path]) -> None:
    """The sizing this replaced: a t3.xlarge (4 vCPU) with 4 precompute pods at 1 CPU,
    recommend and ingest at 10 pods each."""
    old = 4 * (1 + QUEUE_PROXY_CPU) + 10 * (0.5 + QUEUE_PROXY_CPU) + 10 * (0.25 + QUEUE_PROXY_CPU) + REFRESH_CPU
    assert old + SYSTEM_CPU > 4
    movierec_cpu, _, _ = workload_demand(rendered["aws"])
    assert movierec_cpu < old


def test_the_default_instance_type_is_accepted_and_documented() -> None:
    (block,) = [b["instance_type"] for b in hcl(REPO / "terraform" / "variables.tf")["variable"] if "instance_type" in b]
    assert block["default"] in allowed_instance_types()
    deploy = (REPO / "docs" / "deploy.md").read_text()
    assert f"EC2 `{block['default']}`" in deploy  # the cost table prices the host that is created

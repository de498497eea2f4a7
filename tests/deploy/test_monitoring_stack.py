"""Issue 16, item 12: the host runs Prometheus and Grafana (kube-prometheus-stack), and what
movierec gives them fits together: the PodMonitor finds every function pod and labels it the
way the rules and the dashboard query it, the PrometheusRule is alerts.yaml itself, the
dashboard reaches Grafana's sidecar and names the data source the values define, and all of
it is valid against the Prometheus operator's CRD schemas (v0.93.0)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from deploytools import FUNCTIONS, OPERATOR_SCHEMAS, REPO, SCHEMAS, load_docs, manifest_tool
from test_manifests import by_kind, stub_bin

MONITORING = REPO / "monitoring"
INSTALL = REPO / "scripts" / "install-monitoring-stack.sh"


def values() -> dict:
    (doc,) = load_docs(MONITORING / "kube-prometheus-stack.values.yaml")
    return doc


def test_the_operator_schemas_are_really_applied(tmp_path: Path, rendered: dict[str, Path]) -> None:
    """A misspelt PodMonitor field or a rule group of the wrong type fails validation."""
    assert (OPERATOR_SCHEMAS / "SOURCE.md").exists()
    docs = [d for d in load_docs(rendered["aws"]) if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(d["kind"] for d in docs) == ["PodMonitor", "PrometheusRule"]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(docs[0]) + "\n")  # JSON is YAML
    assert manifest_tool("validate", SCHEMAS, str(good)).returncode == 0
    for kind, broken in (("PodMonitor", lambda d: d["spec"]["podMetricsEndpoints"][0].update(portt="x")),
                         ("PrometheusRule", lambda d: d["spec"].update(groups="movierec"))):
        doc = json.loads(json.dumps(next(d for d in docs if d["kind"] == kind)))
        broken(doc)
        bad = tmp_path / f"{kind}.json"
        bad.write_text(json.dumps(doc))
        result = manifest_tool("validate", SCHEMAS, str(bad))
        assert result.returncode == 1 and kind in result.stdout, result.stdout


def test_the_prometheus_rule_is_alerts_yaml(rendered: dict[str, Path]) -> None:
    (rule,) = by_kind(load_docs(rendered["aws"]), "PrometheusRule").values()
    (alerts,) = load_docs(MONITORING / "alerts.yaml")
    assert rule["spec"]["groups"] == alerts["groups"] and len(alerts["groups"]) > 0


def test_the_pod_monitor_finds_every_function_pod_and_labels_it_as_the_rules_query(rendered: dict[str, Path]) -> None:
    docs = load_docs(rendered["aws"])
    (monitor,) = by_kind(docs, "PodMonitor").values()
    services = by_kind(docs, "Service", "serving.knative.dev/")
    selector = monitor["spec"]["selector"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel["function"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    for fn in FUNCTIONS:
        service = services[fn]
        labels = service["spec"]["template"]["metadata"]["labels"]
        assert service["metadata"]["namespace"] == monitor["metadata"]["namespace"]  # a PodMonitor looks in its own
        assert selector["matchLabels"].items() <= labels.items(), fn
        for expression in selector["matchExpressions"]:
            assert expression["operator"] == "In" and labels[expression["key"]] in expression["values"], fn
        assert labels["app.kubernetes.io/name"] == fn  # the `function` label the rules use
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        assert endpoint["path"] == annotations["prometheus.io/path"]
    # Knative names the user container's port user-port in every revision's pods, whatever
    # the Service calls it (knative/serving, pkg/apis/serving: UserPortName); queue-proxy's differ.
    assert endpoint["port"] == "user-port"
    queried = set(re.findall(r'function="(\w+)"', (MONITORING / "alerts.yaml").read_text()))
    assert queried and queried <= set(FUNCTIONS)


def test_the_dashboard_reaches_grafana_and_names_the_data_source_the_values_define(rendered: dict[str, Path]) -> None:
    (config_map,) = [d for d in load_docs(rendered["aws"]) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "movierec-dashboard"]
    dashboard_text = (MONITORING / "grafana" / "movierec.json").read_text()
    assert config_map["data"] == {"movierec.json": dashboard_text}
    grafana = values()["grafana"]
    sidecar = grafana["sidecar"]["dashboards"]
    assert config_map["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"] and sidecar["searchNamespace"] == "ALL"
    uids = set(re.findall(r'"datasource": \{\s*"type": "prometheus",\s*"uid": "([^"]+)"', dashboard_text))
    (source,) = grafana["additionalDataSources"]
    assert uids == {source["uid"]}
    namespace = re.search(r"--namespace (\S+)", INSTALL.read_text()).group(1)
    assert source["url"] == f"http://{values()['fullnameOverride']}-prometheus.{namespace}.svc:9090"


def test_prometheus_selects_movierec_objects_and_may_reach_the_pods(rendered: dict[str, Path]) -> None:
    spec = values()["prometheus"]["prometheusSpec"]
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False and spec["ruleSelectorNilUsesHelmValues"] is False
    namespace = re.search(r"--namespace (\S+)", INSTALL.read_text()).group(1)
    docs = load_docs(rendered["aws"])
    policy = by_kind(docs, "NetworkPolicy")["movierec-ingress"]
    rule = next(r for r in policy["spec"]["ingress"] if "ports" in r)
    allowed = rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert namespace in allowed
    ports = {c["containerPort"] for s in by_kind(docs, "Service", "serving.knative.dev/").values() for c in s["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {p["port"] for p in rule["ports"]}


def test_the_install_script_pins_the_chart_and_uses_the_values(tmp_path: Path) -> None:
    log = tmp_path / "log"
    env = stub_bin(tmp_path / "bin", {"helm": f'echo "$*" >> {log}'})
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, env={**env, "HELM": "helm"}, timeout=60)
    assert result.returncode == 0, result.stderr
    install = log.read_text().splitlines()[-1]
    assert re.search(r"upgrade --install kps prometheus-community/kube-prometheus-stack --version \d+\.\d+\.\d+ ", install)
    assert f"--values {REPO}/monitoring/kube-prometheus-stack.values.yaml" in install
    assert values()["fullnameOverride"] == "kps"
    storage = values()["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
    cloud_init = (REPO / "terraform" / "templates" / "cloud-init.yaml.tftpl").read_text()
    assert storage["storageClassName"] == "microk8s-hostpath" and "hostpath-storage" in cloud_init  # the class exists

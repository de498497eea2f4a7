"""The alert rules and the Grafana dashboard, checked offline with promtool against the code's metrics."""

from __future__ import annotations

import json
import re
import subprocess

from tests.monitoring.promtools import MONITORING, exported_names, metric_names, speed_up, tool

DASHBOARD = MONITORING / "grafana" / "movierec.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"


def promtool(*args: str, cwd=MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rule_exprs(text: str) -> list[str]:
    """The `expr:` of every rule, one-line or block (the rules file is ours: two forms only)."""
    exprs, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"^(\s+)expr: (.*)$", line):
            if m.group(2).strip() != "|":
                exprs.append(m.group(2))
                continue
            block = list(_indented_block(lines[i + 1 :], len(m.group(1))))
            exprs.append("\n".join(block))
    return exprs


def _indented_block(lines: list[str], indent: int):
    for line in lines:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            return
        yield line


def test_rules_are_valid_and_their_unit_tests_pass():
    check = promtool("check", "rules", "alerts.yaml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 18 rules found" in check.stdout
    tested = promtool("test", "rules", "alerts-test.yaml", "alerts-test-days.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_a_runbook_entry_and_known_metrics():
    text = (MONITORING / "alerts.yaml").read_text()
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, re.MULTILINE)
    tests = (MONITORING / "alerts-test.yaml").read_text() + (MONITORING / "alerts-test-days.yaml").read_text()
    runbook = (MONITORING.parent / "docs" / "operations.md").read_text()
    exported = exported_names()
    assert len(alerts) == 18
    for name in alerts:
        assert f"alertname: {name}\n" in tests, f"{name} has no promtool test"
        assert f"runbook_url: docs/operations.md#{name.lower()}" in text
        assert re.search(rf"^#+ {name}$", runbook, re.MULTILINE), f"docs/operations.md has no section for {name}"
    exprs = rule_exprs(text)
    assert len(exprs) == len(alerts)
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= exported, f"{expr!r} uses {used - exported}"


def test_fast_rules_for_the_prometheus_test_are_valid_and_shorter(tmp_path):
    fast = speed_up((MONITORING / "alerts.yaml").read_text(), 60)
    assert "for: 5s" in fast and "[5s]" in fast and "offset 60s" in fast and "for: 5m" not in fast
    (tmp_path / "fast.yaml").write_text(fast)
    check = promtool("check", "rules", str(tmp_path / "fast.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr


def _panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_queries_parse_and_name_only_exported_metrics(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    assert len(exprs) >= 20
    titles = " ".join(p["title"].lower() for p in _panels(dashboard))
    for topic in ("requests per second", "latency", "personalized", "variant", "deliveries", "quarantine", "age of"):
        assert topic in titles, f"no panel about {topic}"
    exported = exported_names()
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= exported, f"{expr!r} uses {used - exported}"
    # promtool parses every query as a recording rule; Grafana's $__rate_interval becomes a duration.
    rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: panel_query_{i}\n        expr: {json.dumps(e.replace('$__rate_interval', '1m'))}\n"
        for i, e in enumerate(exprs))
    (tmp_path / "dashboard-rules.yaml").write_text(rules)
    check = promtool("check", "rules", str(tmp_path / "dashboard-rules.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in check.stdout


def test_a_broken_query_would_fail_the_dashboard_check(tmp_path):
    """The check above can fail: a typo in a query, or a metric the code does not export."""
    assert metric_names('sum(rate(movierec_recommend_answer_total[5m]))') - exported_names()
    (tmp_path / "bad.yaml").write_text('groups:\n  - name: d\n    rules:\n      - record: q\n        expr: "sum(rate(x[1m])"\n')
    assert promtool("check", "rules", str(tmp_path / "bad.yaml")).returncode != 0


def test_dashboard_is_provisioned_from_the_repo():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = (PROVISIONING / "datasources" / "prometheus.yaml").read_text()
    provider = (PROVISIONING / "dashboards" / "movierec.yaml").read_text()
    uids = {p["datasource"]["uid"] for p in _panels(dashboard) if "datasource" in p}
    assert uids == {"movierec-prometheus"} and "uid: movierec-prometheus" in datasource
    assert "type: prometheus" in datasource and "type: file" in provider
    assert dashboard["uid"] == "movierec-overview"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))

"""Helpers for the monitoring tests: Debian's promtool and prometheus, exported metric names, fast rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY

from movierec import freshness, metrics  # noqa: F401  (importing metrics registers every family)
from movierec.processes import free_port, http_ok, wait_until

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
INSTALL_HINT = "install it with scripts/install-monitoring-tools.sh (apt-get install prometheus)"
_DURATION = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {INSTALL_HINT}")
    return path


def exported_names() -> set[str]:
    """Every sample name the functions can export (counters' _total, histograms' _bucket/_count/_sum)."""
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                "gauge": [""], "summary": ["_count", "_sum", "_created"]}
    families = [f for f in REGISTRY.collect() if f.name.startswith("movierec_")]
    families += list(freshness.StoreStateCollector(None).describe())
    return {f.name + s for f in families for s in suffixes[f.type]} | {"up"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers before `{`, `[`, `)` or whitespace, minus PromQL words."""
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", re.sub(r'"[^"]*"|\{[^}]*\}', " ", expr)))
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}
    return {w for w in words if w not in keywords and not _DURATION.fullmatch(w) and not w.isdigit()
            and (w.startswith("movierec_") or w == "up")}


def speed_up(rules: str, factor: int) -> str:
    """The rules file with every `for:`, range and offset divided by `factor` (60: minutes become
    seconds) and every group evaluated each second. Text, not YAML: the venv needs no YAML parser."""
    def scaled(match: re.Match) -> str:
        return f"{max(1, int(match.group(1)) * _SECONDS[match.group(2)] // factor)}s"

    text = re.sub(r"\[(\d+)([smhd])\]", lambda m: f"[{scaled(m)}]", rules)
    text = re.sub(r"offset (\d+)([smhd])", lambda m: f"offset {scaled(m)}", text)
    text = re.sub(r"^(\s+for: )(\d+)([smhd])$", lambda m: m.group(1) + scaled(re.match(r"(\d+)(\w)", m.group(2) + m.group(3))),
                  text, flags=re.MULTILINE)
    return re.sub(r"^(\s*)- name: (.+)$", lambda m: f"{m.group(0)}\n{m.group(1)}  interval: 1s", text, flags=re.MULTILINE)


class Prometheus:
    """A real Prometheus server on a free loopback port, scraping the given targets every second."""

    def __init__(self, workdir: Path, targets: dict[str, str], rules: str):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yaml").write_text(rules)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [{
                "job_name": "movierec",
                "static_configs": [{"targets": [address], "labels": {"function": name}}
                                   for name, address in targets.items()],
            }],
        }
        (workdir / "prometheus.yaml").write_text(json.dumps(config))  # JSON is YAML
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        with open(self.workdir / "prometheus.log", "ab") as log:
            self.process = subprocess.Popen(
                [tool("prometheus"), f"--config.file={self.workdir / 'prometheus.yaml'}",
                 f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(http_ok(f"{self.url}/-/ready"), self.process, timeout=30,
                   what=f"prometheus (log: {self.workdir / 'prometheus.log'})")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending or firing)."""
        body = requests.get(f"{self.url}/api/v1/alerts", timeout=5).json()
        return {a["labels"]["alertname"]: a["state"] for a in body["data"]["alerts"]}

    def query(self, expr: str) -> list[dict]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_firing(self, names: set[str], *, timeout: float, while_waiting=lambda: None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            while_waiting()
            states = self.alerts()
            if all(states.get(n) == "firing" for n in names) or time.monotonic() > deadline:
                return states
            time.sleep(0.5)

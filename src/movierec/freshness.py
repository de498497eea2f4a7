"""Freshness and drift of the batch steps, exported by a long-running function.

Snapshot, train and publish run as jobs that Prometheus cannot scrape, so a
function reads what they left in the store (in the background, never during a
scrape) and exports it: `watch_store(store)`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from movierec.metrics import PROCESS_COLLECTORS

_log = logging.getLogger(__name__)
_STORE_STATE: StoreStateCollector | None = None


PIPELINE_LAST_SUCCESS = "movierec_pipeline_last_success_timestamp_seconds"
PIPELINE_DRIFT = "movierec_pipeline_snapshot_drift_psi"


class StoreStateCollector:
    """Exports when the latest snapshot, model and publication were made, and the latest drift."""

    def __init__(self, store, *, refresh_seconds: float = 60.0):
        self.store, self.refresh_seconds = store, refresh_seconds
        self._lock = threading.Lock()
        self._refreshing = False
        self._refreshed_at = float("-inf")
        self._steps: dict[str, float] = {}
        self._drift: dict[str, float] = {}
        self._manifests: dict[str, dict] = {}  # snapshot id -> manifest; manifests never change

    def describe(self):
        yield GaugeMetricFamily(PIPELINE_LAST_SUCCESS, "When a batch step last produced output", labels=["step"])
        yield GaugeMetricFamily(PIPELINE_DRIFT, "PSI drift of the latest snapshot against the previous one",
                                labels=["measure"])

    def collect(self):
        with self._lock:  # a scrape never waits on the store: a stale cache starts a refresh
            if not self._refreshing and time.monotonic() - self._refreshed_at >= self.refresh_seconds:
                self._refreshing = True
                threading.Thread(target=self.refresh, name="store-state", daemon=True).start()
            steps, drift = dict(self._steps), dict(self._drift)
        last = GaugeMetricFamily(PIPELINE_LAST_SUCCESS, "When a batch step last produced output", labels=["step"])
        for step, value in sorted(steps.items()):
            last.add_metric([step], value)
        psi = GaugeMetricFamily(PIPELINE_DRIFT, "PSI drift of the latest snapshot against the previous one",
                                labels=["measure"])
        for measure, value in sorted(drift.items()):
            psi.add_metric([measure], value)
        yield last
        yield psi

    def refresh(self) -> None:
        """Read the store now and export what it holds; if the store fails, keep the last values.
        `collect` calls it in a thread when the values are older than `refresh_seconds`."""
        try:
            steps, drift = self.read()
        except Exception as exc:  # noqa: BLE001 - store down: keep exporting the last values; staleness alerts still work
            steps, drift = None, None
            _log.warning("reading the store's state failed: %s", exc)
        with self._lock:
            if steps is not None:
                self._steps, self._drift = steps, drift
            self._refreshing = False
            self._refreshed_at = time.monotonic()

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """(step -> unix time of its latest output, measure -> PSI of the latest snapshot)."""
        steps: dict[str, float] = {}
        drift: dict[str, float] = {}
        for key in self.store.list("snapshots"):
            snapshot_id = key.split("/")[1]
            if key.endswith("/manifest.json") and snapshot_id not in self._manifests:
                self._manifests[snapshot_id] = json.loads(self.store.get(key))
        if self._manifests:
            latest = max(self._manifests.values(), key=lambda m: m["created_at"])
            steps["snapshot"] = datetime.fromisoformat(latest["created_at"]).timestamp()
            if report := latest.get("quality", {}).get("report"):
                measures = json.loads(self.store.get(report)).get("drift", {})
                drift = {name: float(v) for name, v in measures.items() if v is not None}
        cards = [k for k in self.store.list("models") if k.endswith("/card.json")]
        if cards:  # versions start with their UTC creation time: the greatest is the latest
            version = max(cards).split("/")[1]
            created = datetime.strptime(version[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            steps["train"] = created.timestamp()
        if self.store.exists("recs/CURRENT"):
            current = json.loads(self.store.get("recs/CURRENT"))
            steps["publish"] = datetime.fromisoformat(current["published_at"]).timestamp()
        return steps, drift


def watch_store(store, *, refresh_seconds: float = 60.0) -> StoreStateCollector:
    """Export the store's freshness and drift from this process (once per process)."""
    global _STORE_STATE
    if _STORE_STATE is None:
        _STORE_STATE = StoreStateCollector(store, refresh_seconds=refresh_seconds)
        REGISTRY.register(_STORE_STATE)
        PROCESS_COLLECTORS.append(_STORE_STATE)
    return _STORE_STATE

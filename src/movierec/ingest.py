"""Turn CloudEvent deliveries into stored stream events.

`ingest` accepts binary, structured and batched (`application/cloudevents-batch+json`)
CloudEvents whose data is one raw stream line. Lines that do not parse are
quarantined, never rejected; only what is not a CloudEvent with text data is
a bad request.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone

from cloudevents import exceptions as ce_errors
from cloudevents.http import CloudEvent, from_dict, from_http

from movierec import metrics
from movierec.errors import BadInput, StoreUnavailable
from movierec.events import Event, event_from_line, write_events
from movierec.groupcommit import GroupCommitter
from movierec.store import Store

_log = logging.getLogger(__name__)
LINE_TYPES = frozenset({"dev.knative.kafka.event", "movierec.stream.line.v1"})
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def parse_delivery(headers: Mapping[str, str], body: bytes) -> list[CloudEvent]:
    """The CloudEvents of one HTTP request, in any of the three modes; BadInput if none."""
    content_type = headers.get("Content-Type", headers.get("content-type", "")) or ""
    try:
        if content_type.split(";")[0].strip() == BATCH_CONTENT_TYPE:
            items = json.loads(body)
            if not isinstance(items, list) or not items:
                raise BadInput("a batch must be a non-empty JSON array of CloudEvents")
            if not all(isinstance(item, dict) for item in items):
                raise BadInput("every item of a batch must be a JSON object")
            return [from_dict(item) for item in items]
        return [from_http(dict(headers), body)]
    except (ce_errors.GenericException, ValueError, TypeError) as exc:
        raise BadInput(f"not a CloudEvent: {exc}") from None


def line_bytes(event: CloudEvent) -> bytes:
    """The raw stream line carried by an event; BadInput if it carries no text."""
    if event["type"] not in LINE_TYPES:
        raise BadInput(f"event type {event['type']!r} is not one of {sorted(LINE_TYPES)}")
    data = event.get_data()
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    if isinstance(data, (bytes, bytearray)) and data:
        return bytes(data)
    raise BadInput(f"event {event['id']!r} has no text data")


def to_events(cloud_events: list[CloudEvent]) -> list[Event]:
    """Validate every event first, so a bad batch changes nothing."""
    received_at = datetime.now(timezone.utc)
    lines = [(e["source"], e["id"], line_bytes(e)) for e in cloud_events]
    return [event_from_line(source, id_, raw, received_at=received_at) for source, id_, raw in lines]


def store_events(store: Store, events: list[Event]) -> None:
    """Make events durable in one write; StoreUnavailable if they are not."""
    started = time.perf_counter()
    try:
        write_events(store, events)
    except StoreUnavailable:
        metrics.INGEST_STORE_ERRORS.inc()
        raise
    except OSError as exc:  # a full or read-only disk is as retryable as S3 being down
        metrics.INGEST_STORE_ERRORS.inc()
        raise StoreUnavailable(f"store write failed: {exc}") from exc
    metrics.INGEST_WRITE_SECONDS.observe(time.perf_counter() - started)
    metrics.INGEST_BATCH_EVENTS.observe(len(events))
    for kind, count in Counter(e.kind for e in events).items():
        metrics.INGEST_EVENTS.labels(kind).inc(count)
    for reason, count in Counter(e.reason for e in events if e.reason).items():
        metrics.INGEST_QUARANTINED.labels(reason).inc(count)


class Ingestor:
    """What the ingest function runs: validate a delivery, then commit it with concurrent ones."""

    def __init__(self, store: Store, *, max_events: int = 5000, max_delay: float = 0.005):
        self.store = store
        self._committer = GroupCommitter(
            lambda events: store_events(store, events), max_events=max_events, max_delay=max_delay
        )

    def ingest(self, headers: Mapping[str, str], body: bytes) -> int:
        """Store every event of one request; returns how many. Returns only once they are durable."""
        events = to_events(parse_delivery(headers, body))
        self._committer.commit(events)
        return len(events)

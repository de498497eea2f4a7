"""Turn CloudEvent deliveries into stored stream events.

`ingest` accepts binary, structured and batched (`application/cloudevents-batch+json`)
CloudEvents whose data is one raw stream line. Lines that do not parse are
quarantined, never rejected; only what is not a CloudEvent with text data is
a bad request.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from movierec import metrics
from movierec.errors import BadInput, StoreUnavailable
from movierec.events import Event, event_from_line, write_events
from movierec.groupcommit import GroupCommitter
from movierec.store import Store
from movierec.stream import FUTURE_TOLERANCE

_log = logging.getLogger(__name__)
LINE_TYPES = frozenset({"dev.knative.kafka.event", "movierec.stream.line.v1"})
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


Delivered = tuple[str, str, bytes]  # (CloudEvent source, id, the raw line)


def parse_delivery(headers: Mapping[str, str], body: bytes) -> list[Delivered]:
    """The stream lines of one HTTP request, in any of the three modes; BadInput if not valid.

    The CloudEvents HTTP binding (binary mode: `ce-*` headers; structured and
    batched: the JSON format) is read here, not by the cloudevents SDK that
    precompute and deadletter use: the SDK 1.x that functions-framework pins
    has no batch reader, so it would give ingest two paths, not one, and
    reading each batch item with its `from_dict` costs about the 10 % of
    batched throughput the SDK was allowed (docs/ingest.md, with the numbers
    of benchmarks/cloudevents_parse.py).
    """
    content_type = (headers.get("Content-Type", "") or "").split(";")[0].strip().lower()
    if content_type in (STRUCTURED_CONTENT_TYPE, BATCH_CONTENT_TYPE):
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise BadInput(f"not CloudEvents JSON: {exc}") from None
        if content_type == STRUCTURED_CONTENT_TYPE:
            return [_json_event("the event", parsed)]
        if not isinstance(parsed, list) or not parsed:
            raise BadInput("a batch must be a non-empty JSON array of CloudEvents")
        return [_json_event(f"batch item {index}", item) for index, item in enumerate(parsed)]
    attributes = {name: headers.get(f"ce-{name}") for name in ("specversion", "id", "source", "type")}
    if not any(attributes.values()):
        raise BadInput("not a CloudEvent: no ce-* headers and not a CloudEvents JSON content type")
    return [_checked("the event", attributes, _unquoted(body))]


def _unquoted(body: bytes) -> bytes:
    """Binary-mode data as sent. CloudEvents SDKs JSON-encode `str` data even as text/plain;
    a stream line never starts with a quote, so a JSON string literal is unwrapped."""
    if len(body) >= 2 and body[:1] == b'"' and body[-1:] == b'"':
        try:
            text = json.loads(body)
        except ValueError:
            return body
        if isinstance(text, str):
            return _text_bytes(text)
    return body


def _json_event(what: str, item: object) -> Delivered:
    if not isinstance(item, dict):
        raise BadInput(f"{what} is not a JSON object")
    data = item.get("data")
    if "data_base64" in item:
        try:
            data = base64.b64decode(item["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadInput(f"{what}: data_base64 is not base64") from None
    return _checked(what, item, data)


def _checked(what: str, attributes: Mapping[str, object], data: object) -> Delivered:
    if attributes.get("specversion") != "1.0":
        raise BadInput(f"{what}: specversion must be 1.0")
    for name in ("id", "source", "type"):
        if not isinstance(attributes.get(name), str) or not attributes[name]:
            raise BadInput(f"{what}: {name} is missing or not a string")
    for name in ("id", "source"):  # JSON allows lone surrogates; stored text cannot hold them
        try:
            attributes[name].encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"{what}: {name} is not valid Unicode text") from None
    return attributes["source"], attributes["id"], _line(attributes["type"], data, attributes["id"])


def _line(event_type: str, data: object, event_id: str) -> bytes:
    """The raw stream line carried by an event; BadInput if it carries no text at all."""
    if event_type not in LINE_TYPES:
        raise BadInput(f"event type {event_type!r} is not one of {sorted(LINE_TYPES)}")
    if isinstance(data, str):  # an empty line is a malformed line: quarantined, not refused
        return _text_bytes(data)
    if isinstance(data, (bytes, bytearray)) and data:  # binary mode: an empty body carries nothing
        return bytes(data)
    raise BadInput(f"event {event_id!r} carries no text data")


def _text_bytes(text: str) -> bytes:
    """A JSON string's bytes: escaped bytes (how the replay client sends undecodable input) as those
    bytes; text with any other lone surrogate as surrogatepass bytes. Either way the line is not
    UTF-8 and is quarantined as `not_utf8` with what was sent, never a 500."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def to_events(delivered: list[Delivered], *, future_tolerance: timedelta = FUTURE_TOLERANCE) -> list[Event]:
    received_at = datetime.now(UTC)
    latest = (received_at + future_tolerance).replace(tzinfo=None)  # a line dated later is quarantined
    events = [event_from_line(source, id_, raw, received_at=received_at) for source, id_, raw in delivered]
    return [replace(e, record=None, reason="future_time") if e.record and e.record.time > latest else e
            for e in events]


def store_events(store: Store, events: list[Event]) -> None:
    """Make events durable in one write; StoreUnavailable if they are not."""
    started = time.perf_counter()
    try:
        write_events(store, events)
    except StoreUnavailable as exc:
        metrics.INGEST_STORE_ERRORS.inc()
        _log.warning("store write of %d events failed, answering 503: %s", len(events), exc)
        raise
    except OSError as exc:  # a full or read-only disk is as retryable as S3 being down
        metrics.INGEST_STORE_ERRORS.inc()
        _log.warning("store write of %d events failed, answering 503: %s", len(events), exc)
        raise StoreUnavailable(f"store write failed: {exc}") from exc
    metrics.INGEST_WRITE_SECONDS.observe(time.perf_counter() - started)
    metrics.INGEST_BATCH_EVENTS.observe(len(events))
    for kind, count in Counter(e.kind for e in events).items():
        metrics.INGEST_EVENTS.labels(kind).inc(count)
    for reason, count in Counter(e.reason for e in events if e.reason).items():
        metrics.INGEST_QUARANTINED.labels(reason).inc(count)


class Ingestor:
    """What the ingest function runs: validate a delivery, then commit it with concurrent ones."""

    def __init__(self, store: Store, *, max_events: int = 5000, max_delay: float = 0.001,
                 future_tolerance: timedelta = FUTURE_TOLERANCE):
        self.store = store
        self.future_tolerance = future_tolerance
        self._committer = GroupCommitter(
            lambda events: store_events(store, events), max_events=max_events, max_delay=max_delay
        )

    async def ingest(self, headers: Mapping[str, str], body: bytes) -> int:
        """Store every event of one request; returns how many, once they are durable."""
        try:
            delivered = parse_delivery(headers, body)
        except RecursionError:  # JSON nested thousands deep: no CloudEvent is
            raise BadInput("JSON nested too deeply to be a CloudEvent") from None
        events = to_events(delivered, future_tolerance=self.future_tolerance)
        await self._committer.commit(events)
        return len(events)

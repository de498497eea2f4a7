"""Dead letters: events Knative could not deliver, kept whole in the store until they are sent again.

The `deadletter` function is the dead-letter sink of the KafkaSource, the Broker
and the Triggers. It stores each event as structured-mode CloudEvents JSON,
with the `knativeerror*` extensions Knative adds, under
`deadletter/date=<day it arrived>/<hash of source, id and data>.json`: a
redelivered dead letter lands on the same key. `movierec deadletters replay`
sends them again, as they first were (same source and id, so ingest counts a
line that did get through only once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from cloudevents.conversion import to_binary, to_json
from cloudevents.http import CloudEvent, from_json

from movierec.store import Store

PREFIX = "deadletter"
STREAM_TYPES = ("dev.knative.kafka.event", "movierec.stream.line.v1")  # what ingest takes back


def _data_bytes(event: CloudEvent) -> bytes:
    data = event.data
    if data is None or isinstance(data, bytes):
        return data or b""
    return data.encode() if isinstance(data, str) else json.dumps(data, sort_keys=True).encode()


def key_of(event: CloudEvent, arrived: datetime) -> str:
    digest = hashlib.sha256()
    for part in (event["source"].encode(), event["id"].encode(), _data_bytes(event)):
        digest.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no two events share a key
    return f"{PREFIX}/date={arrived:%Y-%m-%d}/{digest.hexdigest()[:32]}.json"


def keep(store: Store, event: CloudEvent, arrived: datetime | None = None) -> str:
    """Store a dead letter durably (create-only: a redelivery changes nothing); returns its key."""
    key = key_of(event, arrived or datetime.now(UTC))
    store.put_new(key, to_json(event))
    return key


def keys(store: Store, since: str | None = None) -> list[str]:
    """Every dead letter's key, oldest day first; `since`: from that day (YYYY-MM-DD) on."""
    found = [k for k in store.list(PREFIX) if k.endswith(".json")]
    return [k for k in found if since is None or k.split("/")[1] >= f"date={since}"]


def load(store: Store, key: str) -> CloudEvent:
    return from_json(store.get(key))


def original(event: CloudEvent) -> CloudEvent:
    """The event as it was first sent: without the extensions Knative added on dead-lettering."""
    attributes = {k: v for k, v in event.get_attributes().items() if not k.startswith("knativeerror")}
    return CloudEvent(attributes, event.data)


@dataclass
class Resent:
    sent: int = 0
    skipped: int = 0  # not of the types asked for
    failed: list[str] = field(default_factory=list)  # keys whose delivery was not answered 2xx


def resend(store: Store, url: str, keys_: Iterable[str], *, types: Iterable[str] = STREAM_TYPES,
           timeout: float = 30.0) -> Resent:
    """POST each dead letter of the given types to `url` in binary mode; the dead letters stay stored."""
    wanted, result = set(types), Resent()
    with requests.Session() as session:
        for key in keys_:
            event = load(store, key)
            if event["type"] not in wanted:
                result.skipped += 1
                continue
            headers, body = to_binary(original(event))
            try:
                ok = session.post(url, headers=headers, data=body, timeout=timeout).ok
            except requests.RequestException:
                ok = False
            if ok:
                result.sent += 1
            else:
                result.failed.append(key)
    return result


def summary(store: Store, keys_: Iterable[str]) -> Iterator[str]:
    """One line per dead letter: day, type, source, id and why Knative gave up on it."""
    for key in keys_:
        event = load(store, key)
        reason = event.get("knativeerrorcode") or "?"
        yield f"{key.split('/')[1][5:]}  {event['type']}  {event['source']}  {event['id']}  error {reason}"

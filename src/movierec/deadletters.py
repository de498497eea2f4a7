"""Dead letters: events Knative could not deliver, kept whole in the store until they are sent again.

The `deadletter` function is the dead-letter sink of the KafkaSource, the Broker
and the Triggers. It stores each event as structured-mode CloudEvents JSON,
with the `knativeerror*` extensions Knative adds, under
`deadletter/date=<day it arrived>/<hash of source, id and data>.json`: a
dead letter redelivered the same day lands on the same key (one redelivered
after midnight is kept twice; a replay sends it twice, which ingest folds
away). `movierec deadletters replay` sends them again, as they first were
(same source, id and data bytes, so ingest counts a line that did get
through only once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from cloudevents import exceptions as ce_errors
from cloudevents.conversion import to_binary, to_json
from cloudevents.http import CloudEvent, from_http, from_json
from cloudevents.sdk.converters import is_binary

from movierec.errors import BadInput
from movierec.store import Store

PREFIX = "deadletter"
STREAM_TYPES = ("dev.knative.kafka.event", "movierec.stream.line.v1")  # what ingest takes back


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")  # JSON admits lone surrogates; keep them, don't fail


def _data_bytes(event: CloudEvent) -> bytes:
    data = event.data
    if data is None or isinstance(data, bytes):
        return data or b""
    return _text(data) if isinstance(data, str) else _text(json.dumps(data, sort_keys=True))


def parse(headers: dict[str, str], body: bytes) -> CloudEvent:
    """The dead letter of one request; BadInput for what is not a CloudEvent, or cannot be kept as sent.

    Binary mode keeps the body as the bytes that were sent (the SDK would parse a body that looks
    like JSON, and a replay would then send other bytes than the original). In structured mode
    `data_base64` must be strict base64: the SDK's lenient decoding would keep other bytes than
    were sent (or none), and answer 200 for it.
    """
    binary = is_binary(headers)
    try:
        if not binary and isinstance(item := json.loads(body), dict) and "data_base64" in item:
            if not isinstance(item["data_base64"], str):
                raise BadInput("data_base64 is not a string")
            base64.b64decode(item["data_base64"], validate=True)
        return from_http(headers, body, **({"data_unmarshaller": lambda data: data} if binary else {}))
    except binascii.Error:
        raise BadInput("data_base64 is not valid base64") from None
    except (ce_errors.GenericException, ValueError, UnicodeError) as exc:
        raise BadInput(f"not a CloudEvent: {exc}") from None
    except RecursionError:
        raise BadInput("not a CloudEvent: JSON nested too deeply") from None


def _attribute(value: object) -> bytes:
    """An attribute's bytes for the key. CloudEvents ids are strings, but a sender's numeric id
    arrives too (the very event ingest refused): it is kept, and never keyed like a string
    (0xff never occurs in UTF-8)."""
    return _text(value) if isinstance(value, str) else b"\xff" + _text(json.dumps(value, sort_keys=True))


def key_of(event: CloudEvent, arrived: datetime) -> str:
    digest = hashlib.sha256()
    for part in (_attribute(event["source"]), _attribute(event["id"]), _data_bytes(event)):
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
    # data_base64 comes back as the bytes first sent; only a JSON `data` value is parsed.
    return from_json(store.get(key), data_unmarshaller=lambda d: d if isinstance(d, bytes) else json.loads(d))


def original(event: CloudEvent) -> CloudEvent:
    """The event as it was first sent: without the extensions Knative added on dead-lettering."""
    attributes = {k: v for k, v in event.get_attributes().items() if not k.startswith("knativeerror")}
    data = _text(event.data) if isinstance(event.data, str) else event.data  # a line, not a JSON string
    return CloudEvent(attributes, data)


@dataclass
class Resent:
    sent: int = 0
    skipped: int = 0  # not of the types asked for
    failed: list[str] = field(default_factory=list)  # keys whose delivery was not answered 2xx


def resend(store: Store, url: str, keys_: Iterable[str], *, types: Iterable[str] = STREAM_TYPES,
           concurrency: int = 8, timeout: float = 30.0) -> Resent:
    """POST each dead letter of the given types to `url` in binary mode, `concurrency` at a time
    (each waits on ingest's durable write); the dead letters stay stored."""
    wanted, result, local = set(types), Resent(), threading.local()

    def send(key: str) -> bool | None:
        """True: delivered; False: not; None: not a wanted type."""
        try:
            event = load(store, key)
            if event["type"] not in wanted:
                return None
            headers, body = to_binary(original(event))
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            return session.post(url, headers=headers, data=body, timeout=timeout).ok
        except (requests.RequestException, ValueError, UnicodeError, ce_errors.GenericException):
            return False  # unreachable, refused, or a stored object that is not an event: reported by key

    keys_ = list(keys_)
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(send, keys_))
    for key, delivered in zip(keys_, outcomes):
        if delivered is None:
            result.skipped += 1
        elif delivered:
            result.sent += 1
        else:
            result.failed.append(key)
    return result


def summary(store: Store, keys_: Iterable[str]) -> Iterator[str]:
    """One line per dead letter: day, type, source, id and why Knative gave up on it."""
    for key in keys_:
        event = load(store, key)
        reason = event.get("knativeerrorcode") or "?"
        line = f"{key.split('/')[1][5:]}  {event['type']}  {event['source']}  {event['id']}  error {reason}"
        yield line.encode("utf-8", "backslashreplace").decode()  # printable whatever the sender put in

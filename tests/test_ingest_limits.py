"""ingest's request limits: a malformed Content-Length is a bad request; a chunked body is capped while read."""

from __future__ import annotations

import json

from movierec.store import open_store
from tests.functions.test_ingest import LINE, client_for, stored_rows

BATCH = {"Content-Type": "application/cloudevents-batch+json"}
MiB = 1024 * 1024


def chunked(body: bytes, size: int = MiB):
    """A generator body: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_malformed_content_length_is_400(tmp_path, monkeypatch):
    client = client_for(str(tmp_path / "store"), monkeypatch)
    for value in ("abc", "-1", "1e3", b"\xb2"):  # the last: "²" once decoded, a digit to str.isdigit
        answer = client.post("/", content=b"[]", headers=BATCH | {"Content-Length": value})
        assert answer.status_code == 400, value


def test_a_chunked_body_over_the_limit_is_413_and_one_under_it_is_stored(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    client = client_for(uri, monkeypatch)
    item = {"specversion": "1.0", "type": "movierec.stream.line.v1", "source": "s", "data": LINE}
    small = json.dumps([item | {"id": str(i)} for i in range(3)]).encode()
    answer = client.post("/", content=chunked(small, 40), headers=BATCH)
    assert answer.status_code == 200 and answer.json() == {"stored": 3}
    huge = b"[" + b" " * (33 * MiB) + b"]"
    answer = client.post("/", content=chunked(huge), headers=BATCH)
    assert answer.status_code == 413
    assert len(stored_rows(open_store(uri), "rate")) == 3

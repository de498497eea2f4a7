"""The fault suite's fixtures: the session's real S3 server behind a proxy that can fail on demand."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import BUCKET
from tests.faults.s3proxy import S3FaultProxy


@pytest.fixture
def s3_proxy(seaweed, monkeypatch):
    """A fault proxy in front of SeaweedFS; this process and the function processes it starts reach
    S3 through it (AWS_ENDPOINT_URL)."""
    proxy = S3FaultProxy(seaweed.endpoint)
    proxy.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied_uri(s3_proxy) -> str:
    return f"s3://{BUCKET}/f-{uuid.uuid4().hex[:12]}"

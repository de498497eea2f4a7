"""The store against S3 answering 403, 409 and 503, and hanging past every timeout."""

from __future__ import annotations

import time

import pytest

from movierec.errors import StoreUnavailable
from movierec.groupcommit import GroupCommitter
from movierec.store import open_store


def test_409_is_not_already_stored(proxied_uri, s3_proxy):
    """A 409 while another conditional write is in flight, and nothing stored: put_new must not say
    "exists" (the caller would acknowledge a line nobody stored); it tries again and stores it."""
    store = open_store(proxied_uri)
    s3_proxy.fail(status=409, method="PUT", times=2)
    assert store.put_new("events/a.parquet", b"one") is True
    assert store.get("events/a.parquet") == b"one"


def test_409_that_never_clears_is_store_unavailable_and_nothing_is_claimed(proxied_uri, s3_proxy):
    store = open_store(proxied_uri)
    s3_proxy.fail(status=409, method="PUT")
    with pytest.raises(StoreUnavailable):
        store.put_new("events/b.parquet", b"one")
    s3_proxy.heal()
    assert not store.exists("events/b.parquet")


def test_409_while_the_first_write_lands_is_already_stored(proxied_uri, s3_proxy, seaweed, monkeypatch):
    """The concurrent write has completed when this one is told 409: a HEAD confirms it, so "exists"."""
    store = open_store(proxied_uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)  # the first writer, straight to S3
    open_store(proxied_uri).put("events/c.parquet", b"first")
    s3_proxy.fail(status=409, method="PUT", times=1)
    assert store.put_new("events/c.parquet", b"first") is False
    assert store.get("events/c.parquet") == b"first"


@pytest.mark.parametrize("status", [403, 503])
def test_refused_credentials_and_503_are_store_unavailable(proxied_uri, s3_proxy, status):
    store = open_store(proxied_uri)
    s3_proxy.fail(status=status)
    for call in (lambda: store.put("k", b"v"), lambda: store.put_new("k2", b"v"), lambda: store.get("k"),
                 lambda: store.list("x")):
        with pytest.raises(StoreUnavailable):
            call()


def test_a_hung_s3_fails_a_write_well_within_the_ack_timeout(proxied_uri, s3_proxy):
    """An endpoint that accepts and never answers: one write gives up with StoreUnavailable before
    ingest's group commit stops waiting for it (else the batch lands after its requests got 503)."""
    store = open_store(proxied_uri)
    s3_proxy.fail(hang=120)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.put_new("events/d.parquet", b"v")
    assert time.monotonic() - started < GroupCommitter(lambda _: None).timeout / 2

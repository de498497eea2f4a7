"""One contract, run against a local directory and a real SeaweedFS S3 server."""

from __future__ import annotations

import os
import stat
import threading
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movierec.errors import ConfigError, NotFound, StoreUnavailable
from movierec.store import LocalStore, S3Store, open_store


def test_put_get_roundtrip_and_overwrite(store):
    store.put("a/b.bin", b"one")
    assert store.get("a/b.bin") == b"one"
    store.put("a/b.bin", b"two")
    assert store.get("a/b.bin") == b"two"
    assert store.exists("a/b.bin")
    assert not store.exists("a/c.bin")


def test_missing_key_is_not_found(store):
    with pytest.raises(NotFound):
        store.get("nope/x")


def test_put_new_never_overwrites(store):
    assert store.put_new("events/x.parquet", b"first") is True
    assert store.put_new("events/x.parquet", b"second") is False
    assert store.get("events/x.parquet") == b"first"


def test_list_is_recursive_sorted_and_scoped(store):
    for key in ["recs/r2/part-1", "recs/r1/part-0", "recs/r1/run.json", "recsX/other", "models/m/card.json"]:
        store.put(key, b"x")
    assert store.list("recs") == ["recs/r1/part-0", "recs/r1/run.json", "recs/r2/part-1"]
    assert store.list("recs/r1/") == ["recs/r1/part-0", "recs/r1/run.json"]
    assert store.list("absent") == []


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a"])
def test_invalid_keys_are_rejected(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_parquet_roundtrip(store):
    table = pa.table({"user_id": pa.array([1, 2], pa.int64()), "movies": [["a", "b"], ["c"]]})
    store.put_parquet("recs/r/part-0-of-1.parquet", table)
    assert store.get_parquet("recs/r/part-0-of-1.parquet").equals(table)
    assert store.get_parquet("recs/r/part-0-of-1.parquet", columns=["user_id"]).column_names == ["user_id"]


def test_open_input_reads_any_part_like_get(store):
    data = bytes(range(256)) * 20_000  # 5 MB: more than one read buffer
    store.put("big.bin", data)
    with store.open_input("big.bin") as f:
        assert f.read(10) == data[:10]
        f.seek(-7, 2)
        assert f.read() == data[-7:]
        f.seek(3_000_000)
        assert f.read(2_000_000) == data[3_000_000:5_000_000]
        f.seek(0)
        assert f.read() == data
    with pytest.raises(NotFound):
        store.open_input("nope/x")


def test_open_input_reads_one_parquet_column_without_the_others(store):
    rng = np.random.default_rng(0)
    table = pa.table({"user_id": np.arange(200_000), "noise": rng.random(200_000)})
    store.put_parquet("snap.parquet", table)
    with store.open_input("snap.parquet") as f:
        assert pq.ParquetFile(f).read(columns=["user_id"]).column("user_id").equals(table.column("user_id"))


def gets_of(proxy, key: str) -> list[int]:
    """The bytes of each GET of `key` that went through the proxy."""
    return [sent for method, path, _, sent in proxy.seen if method == "GET" and key in path]


def test_s3_open_input_fetches_only_the_ranges_read(proxied_uri, s3_proxy):
    """A parquet reader through open_input asks S3 for the footer and the one column, not the object."""
    store = open_store(proxied_uri)
    rng = np.random.default_rng(0)
    store.put_parquet("snap.parquet", pa.table({"user_id": np.arange(200_000), "noise": rng.random(200_000)}))
    size = len(store.get("snap.parquet"))
    s3_proxy.seen.clear()
    with store.open_input("snap.parquet") as f:
        pq.ParquetFile(f).read(columns=["user_id"])
    fetched = gets_of(s3_proxy, "snap.parquet")
    assert 0 < sum(fetched) < size / 2, (fetched, size)


def test_s3_open_input_refuses_to_mix_versions(seaweed):
    store = open_store(f"s3://movierec-test/t-{uuid.uuid4().hex[:12]}")
    store.put("big.bin", b"a" * 3_000_000)
    with store.open_input("big.bin") as f:
        assert f.read(10) == b"a" * 10
        store.put("big.bin", b"b" * 3_000_000)
        f.seek(2_000_000)
        with pytest.raises(StoreUnavailable, match="replaced while being read"):
            f.read(10)


def test_local_open_input_keeps_the_version_it_opened(local_store):
    local_store.put("big.bin", b"a" * 3_000_000)
    with local_store.open_input("big.bin") as f:
        local_store.put("big.bin", b"b" * 3_000_000)
        f.seek(2_000_000)
        assert f.read(10) == b"a" * 10


def test_readers_never_see_a_partial_object(store):
    """While a writer replaces a 4 MB object again and again, every read is one whole version."""
    versions = [bytes([i]) * 4_000_000 for i in range(4)]
    store.put("big.bin", versions[0])
    stop, seen, bad = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            data = store.get("big.bin")
            if data not in versions:
                bad.append(len(data))
            seen.add(data[:1])

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(12):
        store.put("big.bin", versions[i % 4])
    stop.set()
    reader.join()
    assert not bad
    assert len(seen) >= 2  # the reader really overlapped the writes


def test_local_store_leaves_no_temp_files(local_store):
    local_store.put("x/y", b"1")
    local_store.put_new("x/y", b"2")
    assert [p.name for p in (local_store.root / "x").iterdir()] == ["y"]


def test_open_store_dispatches_on_scheme(tmp_path, seaweed):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3Store) and s3.prefix == "some/prefix"
    with pytest.raises(ConfigError):
        open_store("gs://bucket/x")
    with pytest.raises(ConfigError):
        open_store("s3:///nobucket")


def test_unreachable_s3_is_store_unavailable(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(StoreUnavailable):
        open_store("s3://movierec-test/x").put("k", b"v")


def test_wrong_secret_is_refused(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(Exception) as info:
        open_store("s3://movierec-test/x").put("k", b"v")
    assert not isinstance(info.value, NotFound)


def test_s3_open_input_reads_to_the_end_in_one_request(proxied_uri, s3_proxy):
    store = open_store(proxied_uri)
    data = bytes(range(256)) * 4_000  # 1 MB
    store.put("big.bin", data)
    s3_proxy.seen.clear()
    with store.open_input("big.bin") as f:
        f.seek(100)
        assert f.read() == data[100:]
    assert len(gets_of(s3_proxy, "big.bin")) == 1


def test_not_found_names_the_key_but_not_the_store(store):
    with pytest.raises(NotFound) as info:
        store.get("nope/x")
    assert str(info.value) == "nope/x not found"


def test_local_store_writes_again_into_a_directory_removed_behind_its_back(local_store):
    import shutil

    local_store.put("events/kind=rate/date=2026-11-01/a.parquet", b"a")
    shutil.rmtree(local_store.root / "events")
    local_store.put("events/kind=rate/date=2026-11-01/b.parquet", b"b")
    assert local_store.get("events/kind=rate/date=2026-11-01/b.parquet") == b"b"


def test_a_body_cut_off_mid_read_is_the_store_being_unavailable():
    """A reset or a TLS connection cut while an S3 body streams (faults this machine cannot cause
    on a loopback server, so the body is a stand-in raising what urllib3 and botocore raise)."""
    from botocore.exceptions import ReadTimeoutError
    from urllib3.exceptions import SSLError

    from movierec.store import _read_body

    class Cut:
        def __init__(self, exc):
            self.exc = exc

        def read(self):
            raise self.exc

    for exc in (SSLError("EOF occurred in violation of protocol"), ReadTimeoutError(endpoint_url="http://s3")):
        with pytest.raises(StoreUnavailable, match="interrupted"):
            _read_body(Cut(exc))


def test_local_put_new_of_an_existing_key_makes_its_entry_durable_first(local_store, monkeypatch):
    """"Already there" must mean durable: the first writer may not have fsynced the directory yet
    when a redelivery finds its file, and the redelivery is acknowledged on that answer."""
    local_store.put_new("events/k.parquet", b"a")
    real_fsync, synced = os.fsync, []

    def recording_fsync(fd):  # the directories fsynced, by (device, inode)
        if stat.S_ISDIR((info := os.fstat(fd)).st_mode):
            synced.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert local_store.put_new("events/k.parquet", b"a") is False
    events = os.stat(local_store.root / "events")  # the directory that holds the key's entry
    assert synced == [(events.st_dev, events.st_ino)]


def test_a_key_below_a_file_is_not_found(local_store):
    local_store.put("recs/CURRENT", b"{}")
    with pytest.raises(NotFound):
        local_store.get("recs/CURRENT/run.json")
    with pytest.raises(NotFound):
        local_store.open_input("recs/CURRENT/run.json")

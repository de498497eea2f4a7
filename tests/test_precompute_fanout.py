"""Fan-out: one event per partition to local precompute processes; late partitions are sent again."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from movierec.errors import MovierecError
from movierec.precompute import parse_request, precompute_partition
from movierec.recs import shard_key
from movierec.store import open_store
from pipelines.fanout import run_remote, run_workers, start_run
from pipelines.publish import validate_run
from tests.conftest import build_published, small_world_lines

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("fanout") / "store")
    return uri, build_published(uri, small_world_lines(users=200, movies=60), partitions=2)


class FlakySink:
    """A stand-in for the Broker: answers 202 and does the work in-process, but loses chosen events."""

    def __init__(self, store, lose: dict[int, int]):
        self.received: list[int] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                job = parse_request(dict(self.headers), body)
                sink.received.append(job["partition"])
                self.send_response(202)
                self.end_headers()
                if lose.get(job["partition"], 0) > 0:
                    lose[job["partition"]] -= 1  # accepted, then lost: the instance died
                    return
                precompute_partition(store, **job)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_lost_partition_is_sent_again_and_the_run_completes(world):
    uri, built = world
    store = open_store(uri)
    run = start_run(store, built["model"]["version"], partitions=5, top_k=20)
    with FlakySink(store, lose={3: 1}) as sink:
        sends = run_remote(store, run, sink.url, concurrency=2, partition_timeout=1.0, poll_seconds=0.05)
    assert sends == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1}
    assert sorted(sink.received) == [0, 1, 2, 3, 3, 4]
    assert validate_run(store, run.run_id) == 200


def test_a_partition_that_never_finishes_fails_the_run_and_says_which(world):
    uri, built = world
    store = open_store(uri)
    run = start_run(store, built["model"]["version"], partitions=2, top_k=20)
    with FlakySink(store, lose={1: 99}) as sink, pytest.raises(MovierecError, match="partition 1 .* 2 sends"):
        run_remote(store, run, sink.url, partition_timeout=0.5, max_sends=2, poll_seconds=0.05)
    assert not store.exists(shard_key(run.run_id, 1, 2))


def test_local_fan_out_to_two_precompute_processes_over_http(world):
    uri, built = world
    store = open_store(uri)
    run = start_run(store, built["model"]["version"], partitions=4, top_k=20)
    done = []
    sends = run_workers(store, run, workers=2, threads_per_worker=1, poll_seconds=0.1, on_done=done.append)
    assert sorted(done) == [0, 1, 2, 3] and set(sends.values()) == {1}
    assert validate_run(store, run.run_id) == 200
    # Identical to scoring in this process: the partition hash and the scores agree across processes.
    in_process = start_run(store, run.model_version, partitions=4, top_k=20)
    precompute_partition(store, run_id=in_process.run_id, model_version=run.model_version, partition=2,
                         partitions=4, top_k=20)
    assert store.get(shard_key(run.run_id, 2, 4)) == store.get(shard_key(in_process.run_id, 2, 4))

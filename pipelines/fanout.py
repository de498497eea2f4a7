"""Fan out precomputation: one `movierec.precompute.requested.v1` CloudEvent per user partition.

`run_remote` sends every partition to one or more sinks (the Knative Broker,
or local precompute processes over HTTP), watches the store for shards, and
re-sends a partition whose shard has not appeared within `partition_timeout`:
a lost event or a crashed instance costs one re-send, not the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from movierec.errors import MovierecError
from movierec.models.registry import load_card
from movierec.precompute import REQUEST_TYPE, precompute_partition
from movierec.processes import FunctionProcess
from movierec.recs import Run, new_run_id, shard_key, write_run
from movierec.store import Store

_log = logging.getLogger(__name__)
EVENT_SOURCE = "movierec/precompute"


def start_run(store: Store, model_version: str, *, partitions: int, top_k: int) -> Run:
    card = load_card(store, model_version)
    run = Run(
        run_id=new_run_id(),
        model_version=model_version,
        snapshot_id=card["snapshot_id"],
        partitions=partitions,
        top_k=top_k,
        created_at=datetime.now(UTC).isoformat(),
    )
    write_run(store, run)
    return run


def partition_event(run: Run, partition: int) -> CloudEvent:
    """The request for one partition; its id is stable, so a re-sent partition is the same event."""
    return CloudEvent(
        {
            "type": REQUEST_TYPE,
            "source": EVENT_SOURCE,
            "id": f"{run.run_id}/{partition}",
            "datacontenttype": "application/json",
        },
        {
            "run_id": run.run_id,
            "model_version": run.model_version,
            "partition": partition,
            "partitions": run.partitions,
            "top_k": run.top_k,
        },
    )


def run_local(store: Store, run: Run, *, on_done=None) -> None:
    """Every partition in this process, one after another."""
    for partition in range(run.partitions):
        precompute_partition(
            store,
            run_id=run.run_id,
            model_version=run.model_version,
            partition=partition,
            partitions=run.partitions,
            top_k=run.top_k,
        )
        if on_done:
            on_done(partition)


def send_partition(session: requests.Session, sink: str, run: Run, partition: int, *, timeout: float) -> None:
    headers, body = to_binary(partition_event(run, partition))
    answer = session.post(sink, headers=headers, data=body, timeout=timeout)
    if answer.status_code >= 300:
        raise MovierecError(f"sink {sink} answered {answer.status_code} for partition {partition}: {answer.text[:200]}")


def done_partitions(store: Store, run: Run) -> set[int]:
    """Partitions whose shard exists: one listing, not one request per partition."""
    keys = set(store.list(f"recs/{run.run_id}"))
    return {p for p in range(run.partitions) if shard_key(run.run_id, p, run.partitions) in keys}


def run_remote(
    store: Store,
    run: Run,
    sinks: str | Sequence[str],
    *,
    concurrency: int = 1,
    partition_timeout: float = 600.0,
    max_sends: int = 3,
    poll_seconds: float = 0.5,
    on_done: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """Send one event per partition to the sinks, re-send the late ones, wait for every shard.

    A local precompute process answers when its shard is written, so each sink
    gets `concurrency` requests in flight (1 keeps one partition per
    process). The Broker answers 202 at once; then the store alone says what
    is done. Returns how many times each partition was sent.
    """
    sinks = [sinks] if isinstance(sinks, str) else list(sinks)
    todo: queue.Queue[int | None] = queue.Queue()
    sends: dict[int, int] = {}
    sent_at: dict[int, float] = {}
    lock = threading.Lock()
    done: set[int] = set()

    def sender(sink: str) -> None:
        session = requests.Session()
        while (partition := todo.get()) is not None:
            with lock:
                if partition in done:
                    continue
                sends[partition] = sends.get(partition, 0) + 1
                sent_at[partition] = time.monotonic()
            try:
                send_partition(session, sink, run, partition, timeout=partition_timeout)
            except (requests.RequestException, MovierecError) as exc:
                # Not re-queued here: the main loop re-sends when the partition is late, which also
                # spaces out retries against a sink that is down.
                _log.warning("partition %d to %s failed: %s", partition, sink, exc)

    for partition in range(run.partitions):
        todo.put(partition)
    threads = [threading.Thread(target=sender, args=(sink,), daemon=True)
               for sink in sinks for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        while len(done) < run.partitions:
            time.sleep(poll_seconds)
            for partition in sorted(done_partitions(store, run) - done):
                with lock:
                    done.add(partition)
                if on_done:
                    on_done(partition)
            now = time.monotonic()
            with lock:
                late = [p for p, at in sent_at.items() if p not in done and now - at > partition_timeout]
                for partition in late:
                    if sends[partition] >= max_sends:
                        raise MovierecError(f"partition {partition} of run {run.run_id} not done after "
                                            f"{sends[partition]} sends of {partition_timeout:.0f} s each")
                    del sent_at[partition]  # counted as in flight again once a sender picks it up
                    _log.warning("partition %d late after %.0f s: sending it again", partition, partition_timeout)
                    todo.put(partition)
    finally:
        for _ in threads:
            todo.put(None)
    _log.info("run %s: %d shards written", run.run_id, run.partitions)
    return sends


def run_workers(
    store: Store, run: Run, *, workers: int, threads_per_worker: int | None = None, **options
) -> dict[int, int]:
    """Start `workers` local precompute processes and fan the run out to them over HTTP."""
    env = {"OMP_NUM_THREADS": str(threads_per_worker)} if threads_per_worker else {}
    with ExitStack() as stack:
        processes = [FunctionProcess("precompute", store=store.uri, env=env) for _ in range(workers)]
        for process in processes:
            stack.enter_context(process)
        return run_remote(store, run, [p.url for p in processes], **options)

"""Fan out precomputation: one `movierec.precompute.requested.v1` CloudEvent per user partition."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from datetime import datetime, timezone

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from movierec.errors import MovierecError
from movierec.models.registry import load_card
from movierec.precompute import REQUEST_TYPE, precompute_partition
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
        created_at=datetime.now(timezone.utc).isoformat(),
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


def send_partition(sink: str, run: Run, partition: int, *, timeout: float) -> None:
    headers, body = to_binary(partition_event(run, partition))
    answer = requests.post(sink, headers=headers, data=body, timeout=timeout)
    if answer.status_code >= 300:
        raise MovierecError(f"sink {sink} answered {answer.status_code} for partition {partition}: {answer.text[:200]}")


def run_remote(
    store: Store, run: Run, sink: str, *, concurrency: int = 4, timeout: float = 600.0, on_done=None
) -> None:
    """Send one event per partition to `sink`, then wait until every shard is in the store."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda p: send_partition(sink, run, p, timeout=timeout), range(run.partitions)))
    deadline = time.monotonic() + timeout
    pending = set(range(run.partitions))
    while pending:
        for partition in sorted(pending):
            if store.exists(shard_key(run.run_id, partition, run.partitions)):
                pending.discard(partition)
                if on_done:
                    on_done(partition)
        if pending and time.monotonic() > deadline:
            raise MovierecError(f"partitions {sorted(pending)} of run {run.run_id} not done after {timeout:.0f} s")
        if pending:
            time.sleep(0.2)
    _log.info("run %s: %d shards written", run.run_id, run.partitions)



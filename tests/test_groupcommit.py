"""Group commit under a slow store: every waiter learns its outcome, and memory stays bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from movierec.errors import Overloaded, StoreUnavailable
from movierec.groupcommit import GroupCommitter


class SlowStore:
    """A write that blocks until released, recording every batch it was given."""

    def __init__(self):
        self.release = threading.Event()
        self.batches: list[list] = []

    def write(self, items: list) -> None:
        self.batches.append(list(items))
        assert self.release.wait(10)


def test_a_waiter_that_timed_out_does_not_keep_the_rest_of_its_batch_from_hearing_it_was_stored():
    store = SlowStore()
    committer = GroupCommitter(store.write, max_delay=0.2, timeout=0.3)

    async def scenario():
        impatient = asyncio.create_task(committer.commit(["a"]))
        await asyncio.sleep(0)  # submitted first, so it is told first
        patient = committer.submit(["b"])  # same batch: within max_delay
        with pytest.raises(StoreUnavailable):
            await impatient  # gave up after 0.3 s; its events may still become durable
        store.release.set()
        return await asyncio.wait_for(asyncio.wrap_future(patient), 5)

    assert asyncio.run(scenario()) is None
    assert sorted(store.batches[0]) == ["a", "b"]


def test_a_request_that_gave_up_before_its_batch_was_taken_is_not_written():
    store = SlowStore()
    committer = GroupCommitter(store.write, max_delay=0, writers=1)
    first = committer.submit(["first"])  # occupies the only writer
    gave_up = committer.submit(["gave-up"])
    kept = committer.submit(["kept"])
    assert gave_up.cancel()
    store.release.set()
    assert first.result(5) is None and kept.result(5) is None
    assert [item for batch in store.batches for item in batch] == ["first", "kept"]


def test_a_batch_holds_at_most_max_events():
    store = SlowStore()
    committer = GroupCommitter(store.write, max_events=4, max_delay=0, writers=1)
    blocker = committer.submit(["x"])
    while not store.batches:
        threading.Event().wait(0.01)
    futures = [committer.submit([f"{i}a", f"{i}b"]) for i in range(5)]  # 10 events wait
    store.release.set()
    for future in [blocker, *futures]:
        future.result(5)
    assert [len(batch) for batch in store.batches] == [1, 4, 4, 2]


def test_a_full_queue_refuses_with_overloaded_and_then_takes_again():
    store = SlowStore()
    committer = GroupCommitter(store.write, max_events=10, max_delay=0, writers=1, max_pending=25)
    held = [committer.submit(["x"] * 10)]  # taken by the writer, which hangs
    while not store.batches:
        threading.Event().wait(0.01)
    held += [committer.submit(["y"] * 10), committer.submit(["z"] * 10)]  # 20 events wait
    with pytest.raises(Overloaded):
        committer.submit(["w"] * 10)
    held[2].cancel()  # a waiter that gave up no longer counts against the bound
    assert committer.submit(["w"] * 5) is not None
    store.release.set()
    assert held[1].result(5) is None

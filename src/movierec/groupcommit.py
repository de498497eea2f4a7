"""Group commit: concurrent requests share one durable store write.

Each request hands its events to the committer and awaits the write
holding them is durable (or has failed). A flusher thread gathers what
arrived, waits at most `max_delay` seconds for more, or less once
`max_events` are waiting, and writes everything in one go. One write for many
requests is what lets a single instance keep up with the stream.

Up to `writers` batches are written at once: a store write is mostly waiting
(an fsync, an S3 PUT), and overlapping them keeps throughput from being capped
at one batch per write latency. Each request still waits for its own batch.

A batch that fails for any reason but the store (a bug, an unwritable value) is
written again request by request, so one request's events never fail another's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from movierec.errors import StoreUnavailable
from movierec.forking import after_fork_in_child


class GroupCommitter:
    def __init__(
        self,
        write: Callable[[list], None],
        *,
        max_events: int = 5000,
        max_delay: float = 0.001,  # as config.Settings.ingest_max_delay_ms
        writers: int = 4,
        timeout: float = 30.0,
    ):
        self._write = write
        self.max_events = max_events
        self.max_delay = max_delay
        self.writers = writers
        self.timeout = timeout
        self._cond = threading.Condition()
        self._pending: list[tuple[list, Future]] = []
        self._pending_events = 0
        self._started = False
        after_fork_in_child(self._forget)

    def _forget(self) -> None:
        self._started = False  # a forked child (a gunicorn worker) has no flusher and nothing pending
        self._cond = threading.Condition()
        self._pending, self._pending_events = [], 0

    def _ensure_flusher(self) -> None:
        """One flusher thread per process: gunicorn forks workers after the module is imported."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._flush_forever, name="group-commit", daemon=True).start()

    def submit(self, items: list) -> Future:
        """A future that is done once `items` are durable, or fails with what the write raised."""
        future: Future = Future()
        with self._cond:
            self._ensure_flusher()
            self._pending.append((items, future))
            self._pending_events += len(items)
            self._cond.notify()
        return future

    async def commit(self, items: list) -> None:
        """Return once `items` are durable; raise what the write raised if they are not."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.submit(items)), self.timeout)
        except TimeoutError:
            raise StoreUnavailable(f"write not durable within {self.timeout:.0f} s") from None

    def _take(self) -> list[tuple[list, Future]]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            deadline = time.monotonic() + self.max_delay
            while self._pending_events < self.max_events and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            taken, self._pending, self._pending_events = self._pending, [], 0
            return taken

    def _flush_forever(self) -> None:
        free_writers = threading.BoundedSemaphore(self.writers)
        with ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="group-write") as pool:
            while True:
                free_writers.acquire()  # all writers busy: requests keep gathering into the next batch
                pool.submit(self._write_batch, self._take(), free_writers.release)

    def _write_batch(self, taken: list[tuple[list, Future]], done: Callable[[], None]) -> None:
        try:
            self._write([item for items, _ in taken for item in items])
        except BaseException as exc:  # noqa: BLE001 - every waiting request learns whether its events are stored
            if isinstance(exc, Exception) and not isinstance(exc, StoreUnavailable) and len(taken) > 1:
                for items, future in taken:  # not the store: perhaps one request's items, so each alone
                    self._write_alone(items, future)
            else:
                for _, future in taken:
                    future.set_exception(exc)
        else:
            for _, future in taken:
                future.set_result(None)
        finally:
            done()

    def _write_alone(self, items: list, future: Future) -> None:
        try:
            self._write(items)
        except BaseException as exc:  # noqa: BLE001 - the request learns that its events are not stored
            future.set_exception(exc)
        else:
            future.set_result(None)

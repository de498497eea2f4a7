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

Under a slow or hung store, memory stays bounded: a batch holds at most
`max_events` events (or one request's), at most `max_pending` events wait
(beyond that a request is refused with Overloaded, a 503 with Retry-After), and
a request that gave up waiting (its retry is on its way) is dropped from the
queue instead of being written too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from movierec.errors import Overloaded, StoreUnavailable
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
        max_pending: int | None = None,
    ):
        self._write = write
        self.max_events = max_events
        self.max_pending = max_pending or 4 * max_events
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
            if self._pending_events + len(items) > self.max_pending and self._pending:
                self._drop_cancelled()
                if self._pending_events + len(items) > self.max_pending:
                    raise Overloaded(f"{self._pending_events} events already wait for the store; retry later")
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

    def _drop_cancelled(self) -> None:
        """Forget requests that stopped waiting (their futures were cancelled); caller holds the lock."""
        self._pending = [(items, f) for items, f in self._pending if not f.cancelled()]
        self._pending_events = sum(len(items) for items, _ in self._pending)

    def _take(self) -> list[tuple[list, Future]]:
        """The next batch: the oldest waiting requests, up to max_events events (at least one request).
        Each is marked running, so a request that times out from here on can no longer be cancelled
        and still learns the outcome; one that was cancelled before is dropped."""
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                deadline = time.monotonic() + self.max_delay
                while self._pending_events < self.max_events and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                count, size = 0, 0
                for items, _ in self._pending:
                    if count and size + len(items) > self.max_events:
                        break
                    count, size = count + 1, size + len(items)
                taken, self._pending = self._pending[:count], self._pending[count:]
                self._pending_events -= size
            taken = [(items, f) for items, f in taken if f.set_running_or_notify_cancel()]
            if taken:
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

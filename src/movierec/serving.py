"""What `recommend` serves: the published runs held in memory, swapped whole when CURRENT changes.

A cold instance answers as soon as the shard of the asked user is in memory
and loads the rest in the background; a new CURRENT is loaded completely
before it replaces the served one, so a request always sees one whole
publication. The HTTP side is functions/recommend/main.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from movierec import metrics
from movierec.errors import BadInput, InvalidRun, MovierecError, NotFound, NotReady
from movierec.forking import after_fork_in_child
from movierec.index import Answer, VariantIndex
from movierec.partitioning import ab_bucket
from movierec.recs import CURRENT_KEY, current_variants
from movierec.store import Store

_log = logging.getLogger(__name__)
MAX_USER_ID = 2**63 - 1
_SERVICES: weakref.WeakSet[RecommendService] = weakref.WeakSet()  # for stop_all


def parse_user_id(text: str) -> int:
    """A user id as the API accepts it: ASCII digits (leading zeros allowed), below 2^63."""
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        if len(digits) <= 19 and int(digits) <= MAX_USER_ID:  # no int() of a megabyte of digits
            return int(digits)
    raise BadInput(f"user id must be a non-negative decimal integer below 2^63, got {text[:40]!r}")


@dataclass
class Published:
    """One publication: its CURRENT as read, and an index per variant."""

    raw: bytes
    published_at: float
    variants: list[VariantIndex]
    in_memory: bool = False  # every shard of every variant loaded, or known to be unavailable

    def pick(self, user_id: int) -> VariantIndex:
        """The variant a user is in: a stable hash against the cumulative shares."""
        if len(self.variants) == 1:
            return self.variants[0]
        bucket, total = ab_bucket(user_id), 0.0
        for index in self.variants:
            total += index.variant.share
            if bucket < total:
                return index
        return self.variants[-1]

    def finish_loading(self) -> None:
        for index in self.variants:
            index.load_all()
        self.in_memory = True
        metrics.RECOMMEND_UNAVAILABLE_SHARDS.set(sum(len(index.unavailable) for index in self.variants))

    def unavailable(self) -> list[str]:
        """The shards whose users get the popular fallback, as `run_id/partition`."""
        return [f"{i.variant.run_id}/{p}" for i in self.variants for p in sorted(i.unavailable)]


class RecommendService:
    """Holds the published runs and reloads them in the background when recs/CURRENT changes."""

    def __init__(self, store: Store, *, reload_seconds: float = 5.0):
        self.store = store
        self.reload_seconds = reload_seconds
        self._published: Published | None = None
        self._loaded_once = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = threading.Event()
        self.thread: threading.Thread | None = None
        after_fork_in_child(self._forget_thread)
        _SERVICES.add(self)

    def _forget_thread(self) -> None:
        # A forked child (a gunicorn worker) has no reload thread of its own: it starts one and
        # loads what it serves itself, so that only a process that reloads answers from memory.
        self._started = False
        self._published = None

    def ensure_started(self) -> None:
        """Start the reload thread in this process (gunicorn forks workers after import)."""
        if self._started:
            return
        with self._lock:
            if not self._started:
                self._started = True
                self._loaded_once.clear()
                self.thread = threading.Thread(target=self._reload_forever, name="recs-reload", daemon=True)
                self.thread.start()

    def stop(self) -> None:
        """End the reload thread (a serving process never does; tests do)."""
        self._stopped.set()

    @classmethod
    def stop_all(cls) -> None:
        """End the reload thread of every service in this process (tests do, between tests)."""
        for service in list(_SERVICES):
            service.stop()

    def _reload_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                self.reload()
            except MovierecError as exc:  # store down, run missing: keep serving the last good publication
                metrics.RECOMMEND_RELOADS.labels("error").inc()
                _log.warning("loading recs/CURRENT failed (%s); still serving the previous one", exc)
            except Exception:  # noqa: BLE001 - a bug in one load must not stop serving the last good one
                metrics.RECOMMEND_RELOADS.labels("error").inc()
                _log.exception("loading recs/CURRENT failed; still serving the previous one")
            finally:
                self._loaded_once.set()
            self._stopped.wait(self.reload_seconds)

    def reload(self) -> bool:
        """Load CURRENT if it changed; True if a new publication is now served."""
        try:
            raw = self.store.get(CURRENT_KEY)
        except NotFound:
            return False
        published = self._published
        if published is not None and raw == published.raw:
            if not all(index.complete for index in published.variants):  # a cold start's rest, or a retry
                published.finish_loading()
            return False
        current = json.loads(raw)
        variants = current_variants(current)
        if not variants:  # publish refuses this; a hand-written CURRENT must not empty a serving instance
            raise InvalidRun("recs/CURRENT names no variants")
        indexes = [VariantIndex.open(self.store, v) for v in variants]
        new = Published(raw, datetime.fromisoformat(current["published_at"]).timestamp(), indexes)
        if published is None:
            self._published = new  # cold start: answer now, shard by shard
            self._loaded_once.set()
        new.finish_loading()
        self._published = new
        metrics.RECOMMEND_RELOADS.labels("loaded").inc()
        _log.info("serving %s", ", ".join(f"{i.variant.name}={i.variant.run_id}" for i in indexes))
        return True

    @property
    def ready(self) -> bool:
        return self._published is not None

    @property
    def in_memory(self) -> bool:
        """Whether `answer` returns without waiting or I/O (else call it from a thread)."""
        published = self._published
        return published is not None and published.in_memory

    def unavailable(self) -> list[str]:
        """Shards of the served publication that could not be loaded (their users get the fallback)."""
        return [] if self._published is None else self._published.unavailable()

    def _first_publication(self, wait: float) -> Published | None:
        """What is served, waiting up to `wait` seconds for a just-started instance's first read of CURRENT."""
        self.ensure_started()
        if self._published is None:
            self._loaded_once.wait(wait)
        return self._published

    def ready_after_first_load(self, wait: float) -> bool:
        """Ready, once a fresh worker has read CURRENT: a probe that lands on it should see what
        it is about to serve."""
        return self._first_publication(wait) is not None

    def run_age_seconds(self) -> float | None:
        return None if self._published is None else time.time() - self._published.published_at

    def answer(self, user_id: int, *, wait: float = 10.0) -> Answer:
        """The user's answer. Blocks only while not `in_memory`: for the first CURRENT (up to
        `wait` seconds) or a shard still loading."""
        published = self._published
        if published is None or not published.in_memory:
            published = self._first_publication(wait)
            if published is None:
                raise NotReady("no recommendations published yet")
        return published.pick(user_id).answer(user_id)

"""What `recommend` serves: the published runs held in memory, swapped whole when CURRENT changes.

Shards are read with parquet's dictionary codes (2 bytes a movie), never as
20 M Python strings: 1 M users fit in ~50 MB, plus a user table once every
shard is in (~16 MB). A cold instance answers as soon as the shard of the
asked user is in memory and loads the rest in the background; a new CURRENT
is loaded completely before it replaces the served one. An answer is rendered
straight from the codes, in C (`movierec._render`): this is recommend's
request path, measured step by step in docs/serving.md.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec import metrics
from movierec._render import Renderer
from movierec.errors import BadInput, MovierecError, NotFound, NotReady
from movierec.http import encoded_headers
from movierec.models.registry import load_popular
from movierec.partitioning import ab_bucket, partition_of
from movierec.processes import after_fork_in_child
from movierec.recs import (
    CURRENT_KEY,
    Run,
    Variant,
    current_variants,
    load_run,
    shard_key,
)
from movierec.store import Store

_log = logging.getLogger(__name__)
# A complete variant finds users through a table indexed by user id when the ids are dense enough
# that it costs at most this many slots (4 bytes each) per user; sparse ids use binary search.
DIRECT_SLOTS_PER_USER = 8
SLOTS_INT32_BELOW = 2**31  # slot values (row * partitions + partition) past this need int64


def parse_user_id(text: str) -> int:
    """A user id as the API accepts it: 1 to 32 ASCII digits, below 2^63."""
    if len(text) <= 32 and text.isascii() and text.isdigit() and (user_id := int(text)) < 2**63:
        return user_id
    raise BadInput(f"user id must be a non-negative decimal integer below 2^63, got {text[:40]!r}")


class Answer(NamedTuple):
    """One user's answer (a tuple: one per request), rendered as the plain-text body."""

    user_id: int
    index: VariantIndex
    text: bytes  # the movie ids joined by commas, UTF-8
    source: str  # "personalized", or "popular" for a new user (the fallback)

    @property
    def movies(self) -> list[str]:
        """The movie ids as a list, for a JSON answer: the rendered text split, not a second lookup
        (no movie id holds a comma: the stream's recommendation lines list them comma-separated)."""
        return self.text.decode().split(",") if self.text else []

    @property
    def variant(self) -> str:
        return self.index.variant.name

    @property
    def run_id(self) -> str:
        return self.index.variant.run_id

    @property
    def model_version(self) -> str:
        return self.index.variant.model_version


class Shard:
    """One partition's users, ascending, and their movies as codes into the variant's vocabulary."""

    def __init__(self, user_ids: np.ndarray, offsets: np.ndarray, codes: np.ndarray):
        self.user_ids = user_ids
        self._offsets, self._codes = memoryview(offsets), memoryview(codes)  # Python ints without numpy's call cost

    def row(self, user_id: int) -> int | None:
        i = int(self.user_ids.searchsorted(user_id))
        return i if i < len(self.user_ids) and self.user_ids[i] == user_id else None

    def codes_at(self, row: int) -> Sequence[int]:
        return self._codes[self._offsets[row] : self._offsets[row + 1]]


class VariantIndex:
    """One run's recommendations, shard by shard; a missing shard is loaded on first use."""

    def __init__(self, store: Store, variant: Variant, run: Run, popular: list[str]):
        self.store, self.variant, self.run = store, variant, run
        self.popular = popular[: run.top_k]
        self.popular_text = ",".join(self.popular).encode()
        self.headers = {"X-Model-Version": variant.model_version, "X-Recs-Run": variant.run_id, "X-Variant": variant.name}
        self.text_headers = encoded_headers(self.headers | {"Content-Type": "text/plain; charset=utf-8"})
        self.tally_slots = {source: metrics.RECOMMEND_TALLY.slot(("200", source, variant.name))
                            for source in ("personalized", "popular")}  # an answer's slot in the metrics tally
        self.vocabulary: list[str] = []
        self.renderer = Renderer()  # the vocabulary in UTF-8; once complete, the user table too
        self._codes_of: dict[str, int] = {}
        self._shards: list[Shard | None] = [None] * run.partitions
        self._slots: memoryview | None = None  # user id -> row * partitions + partition, or -1
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store: Store, variant: Variant) -> VariantIndex:
        run = load_run(store, variant.run_id)
        return cls(store, variant, run, load_popular(store, run.model_version))

    def shard(self, partition: int) -> Shard:
        shard = self._shards[partition]
        if shard is None:
            with self._lock:  # one load per shard even when many requests want it at once
                shard = self._shards[partition] or self._load(partition)
        return shard

    def load_all(self) -> VariantIndex:
        for partition in range(self.run.partitions):
            self.shard(partition)
        if self._slots is None:
            slots = self._direct_slots(self._shards)
            if slots is not None:  # given to the renderer before `answer` may use it
                shards = self._shards
                offsets, codes = tuple(s._offsets for s in shards), tuple(s._codes for s in shards)
                self.renderer.set_users(slots, self.run.partitions, offsets, codes)
            self._slots = slots
        return self

    def _direct_slots(self, shards: list[Shard]) -> memoryview | None:
        """A table from user id to shard and row: one memory access where binary search takes
        about twenty (docs/serving.md). None when the ids are too sparse for it to pay, or not
        what publish admits (negative or repeated), where binary search answers as it always did."""
        if any(len(s.user_ids) and (s.user_ids[0] < 0 or np.any(s.user_ids[1:] == s.user_ids[:-1])) for s in shards):
            return None
        users = sum(len(s.user_ids) for s in shards)
        top = max((int(s.user_ids[-1]) for s in shards if len(s.user_ids)), default=-1)
        if top >= DIRECT_SLOTS_PER_USER * users:
            return None
        n = self.run.partitions
        slots = np.full(top + 1, -1, dtype=np.int32 if users * n < SLOTS_INT32_BELOW else np.int64)
        for partition, shard in enumerate(shards):
            slots[shard.user_ids] = np.arange(len(shard.user_ids)) * n + partition
        return memoryview(slots)

    @property
    def complete(self) -> bool:
        return all(s is not None for s in self._shards)

    def _load(self, partition: int) -> Shard:
        key = shard_key(self.run.run_id, partition, self.run.partitions)
        try:
            table = pq.read_table(pa.BufferReader(self.store.get(key)), read_dictionary=["movies.list.element"])
        except (NotFound, pa.ArrowException) as exc:
            # Deleted (an expired run) or unreadable: 503 like a store outage; the path stays in the log.
            _log.error("shard %s of run %s cannot be loaded: %s", key, self.run.run_id, exc)
            raise NotReady("recommendations for this user cannot be loaded right now") from None
        user_ids = table["user_id"].to_numpy()
        if len(user_ids) > 1 and not np.all(user_ids[1:] > user_ids[:-1]):  # precompute writes them sorted
            table = table.take(np.argsort(user_ids, kind="stable"))
            user_ids = table["user_id"].to_numpy()
        lists = table["movies"].combine_chunks()
        values = lists.values
        mapping = np.array([self._code(m) for m in values.dictionary.to_pylist()], dtype=np.int64)
        codes = mapping[values.indices.to_numpy()] if len(mapping) else np.empty(0, np.int64)
        dtype = np.uint16 if len(self.vocabulary) <= 65536 else np.int32
        shard = Shard(user_ids, lists.offsets.to_numpy(), codes.astype(dtype))
        self._shards[partition] = shard
        return shard

    def _code(self, movie: str) -> int:
        code = self._codes_of.get(movie)
        if code is None:
            code = self._codes_of[movie] = len(self.vocabulary)
            self.vocabulary.append(movie)
            self.renderer.add(movie.encode())
        return code

    def codes(self, user_id: int) -> Sequence[int] | None:
        """The user's movies as vocabulary codes; None for a user the run does not know."""
        slots = self._slots
        if slots is not None:
            if not 0 <= user_id < len(slots) or (slot := slots[user_id]) < 0:
                return None
            row, partition = divmod(slot, self.run.partitions)
            return self._shards[partition].codes_at(row)
        shard = self.shard(partition_of(user_id, self.run.partitions))
        row = shard.row(user_id)
        return None if row is None else shard.codes_at(row)

    def answer(self, user_id: int) -> Answer:
        if self._slots is not None:  # every shard in memory: found and rendered in one C call
            text = self.renderer.render(user_id)
        else:
            codes = self.codes(user_id)
            text = None if codes is None else self.renderer.join(codes)
        if text is None:
            return Answer(user_id, self, self.popular_text, "popular")
        return Answer(user_id, self, text, "personalized")

    def lookup(self, user_id: int) -> list[str] | None:
        """The user's movies; None for a user the run does not know."""
        codes = self.codes(user_id)
        return None if codes is None else list(map(self.vocabulary.__getitem__, codes))


@dataclass
class Published:
    raw: bytes
    published_at: float
    variants: list[VariantIndex]
    complete: bool = False  # every shard of every variant is in memory

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


class RecommendService:
    """Holds the published runs and reloads them in the background when recs/CURRENT changes.

    The first publication is served as soon as its pointer is read (shards load
    on demand and in the background); every later one is loaded completely
    before it replaces the old, so a request always sees one whole publication.
    """

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

    def _forget_thread(self) -> None:
        # A forked child (a gunicorn worker) has no reload thread of its own: it starts one and
        # loads what it serves itself, so that `answer_now` answers only in a process that reloads.
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
            if not published.complete:  # finish a cold start's background load
                for index in published.variants:
                    index.load_all()
                published.complete = True
            return False
        current = json.loads(raw)
        indexes = [VariantIndex.open(self.store, v) for v in current_variants(current)]
        new = Published(raw, datetime.fromisoformat(current["published_at"]).timestamp(), indexes)
        if published is None:
            self._published = new  # cold start: answer now, shard by shard
            self._loaded_once.set()
        for index in indexes:
            index.load_all()
        new.complete = True
        self._published = new
        metrics.RECOMMEND_RELOADS.labels("loaded").inc()
        _log.info("serving %s", ", ".join(f"{i.variant.name}={i.variant.run_id}" for i in indexes))
        return True

    @property
    def ready(self) -> bool:
        return self._published is not None

    def answer_now(self, user_id: int) -> Answer | None:
        """The answer when everything served is in memory (no waiting, no I/O); else None, and the
        caller asks `recommend` from a thread, which starts the reload thread if need be."""
        published = self._published
        if published is None or not published.complete:
            return None
        return published.pick(user_id).answer(user_id)

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

    def recommend(self, user_id: int, *, wait: float = 10.0) -> Answer:
        published = self._first_publication(wait)
        if published is None:
            raise NotReady("no recommendations published yet")
        return published.pick(user_id).answer(user_id)

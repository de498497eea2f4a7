"""One published run's recommendations in memory, and the answer for a user.

Shards are read with parquet's dictionary codes (2 bytes a movie), never as
20 M Python strings: 1 M users fit in about 50 MB, plus a user table once
every shard is in (4 MB). An answer is the user's codes joined in Python from
the vocabulary's UTF-8 bytes (docs/serving.md says why not C, with numbers).
A shard that is deleted or unreadable leaves its users on the popular
fallback until a later load succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.errors import NotFound
from movierec.models.registry import load_popular
from movierec.partitioning import partition_of
from movierec.recs import Run, Variant, load_run, shard_key
from movierec.store import Store

_log = logging.getLogger(__name__)
PERSONALIZED, POPULAR = "personalized", "popular"
# A complete variant finds users through a table indexed by user id when the ids are dense enough
# that it costs at most this many slots (4 bytes each) per user; sparse ids use binary search.
DIRECT_SLOTS_PER_USER = 8
SLOTS_INT32_BELOW = 2**31  # slot values (row * partitions + partition) past this need int64


class Answer(NamedTuple):
    """One user's answer, rendered as the plain-text body."""

    user_id: int
    variant: Variant
    text: bytes  # the movie ids joined by commas, UTF-8
    source: str  # PERSONALIZED, or POPULAR for a user without recommendations (the fallback)

    @property
    def movies(self) -> list[str]:
        """The movie ids as a list (no movie id holds a comma: the stream lists them comma-separated)."""
        return self.text.decode().split(",") if self.text else []


class Shard:
    """One partition's users, ascending, and their movies as codes into the variant's vocabulary."""

    def __init__(self, user_ids: np.ndarray, offsets: np.ndarray, codes: np.ndarray):
        self.user_ids = user_ids
        # memoryviews: indexing one gives a Python int, without numpy's per-call cost
        self.offsets, self.codes = memoryview(offsets), memoryview(codes)

    def row(self, user_id: int) -> int | None:
        i = int(self.user_ids.searchsorted(user_id))
        return i if i < len(self.user_ids) and self.user_ids[i] == user_id else None

    def codes_at(self, row: int) -> Sequence[int]:
        return self.codes[self.offsets[row] : self.offsets[row + 1]]


EMPTY = Shard(np.empty(0, np.int64), np.zeros(1, np.int32), np.empty(0, np.uint16))  # an unreadable shard's users


class VariantIndex:
    """One run's recommendations, shard by shard; a shard is loaded on first use or by `load_all`."""

    def __init__(self, store: Store, variant: Variant, run: Run, popular: list[str]):
        self.store, self.variant, self.run = store, variant, run
        self.popular_text = ",".join(popular[: run.top_k]).encode()
        self.vocabulary: list[str] = []
        self._utf8: list[bytes] = []  # the vocabulary encoded, by code
        self._codes_of: dict[str, int] = {}
        self.shards: list[Shard | None] = [None] * run.partitions
        self.unavailable: set[int] = set()  # partitions whose shard is missing or unreadable
        self.user_table: memoryview | None = None  # user id -> row * partitions + partition, or -1
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store: Store, variant: Variant) -> VariantIndex:
        run = load_run(store, variant.run_id)
        return cls(store, variant, run, load_popular(store, run.model_version))

    def shard(self, partition: int) -> Shard:
        shard = self.shards[partition]
        if shard is None:
            with self._lock:  # one load per shard even when many requests want it at once
                shard = self.shards[partition] or self._load(partition)
        return shard

    def load_all(self) -> VariantIndex:
        """Every shard in memory (an unreadable one is tried again), then the user table."""
        for partition in range(self.run.partitions):
            if partition in self.unavailable:
                with self._lock:
                    self._load(partition)
            else:
                self.shard(partition)
        if self.user_table is None and not self.unavailable:
            self.user_table = self._build_user_table(self.shards)
        return self

    @property
    def loaded(self) -> bool:
        """Nothing left to read: every shard is in memory or known to be unavailable."""
        return all(s is not None for s in self.shards)

    @property
    def complete(self) -> bool:
        return self.loaded and not self.unavailable

    def _build_user_table(self, shards: list[Shard]) -> memoryview | None:
        """A table from user id to shard and row: one memory access where binary search takes
        about twenty. None when the ids are too sparse for it to pay, or not what publish
        admits (negative or repeated), where binary search answers as it always did."""
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

    def _load(self, partition: int) -> Shard:
        key = shard_key(self.run.run_id, partition, self.run.partitions)
        try:
            table = pq.read_table(pa.BufferReader(self.store.get(key)), read_dictionary=["movies.list.element"])
        except (NotFound, pa.ArrowException) as exc:
            # Deleted (an expired run) or unreadable (truncated): its users get the popular fallback,
            # counted and shown by readiness, until a later load finds it whole.
            if partition not in self.unavailable:
                _log.error("shard %s cannot be loaded (%s): its users get the popular fallback", key, exc)
            self.unavailable.add(partition)
            self.shards[partition] = EMPTY
            return EMPTY
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
        self.shards[partition] = shard
        self.unavailable.discard(partition)
        return shard

    def _code(self, movie: str) -> int:
        code = self._codes_of.get(movie)
        if code is None:
            self._utf8.append(movie.encode())  # before the code is handed out: readers index it
            code = self._codes_of[movie] = len(self.vocabulary)
            self.vocabulary.append(movie)
        return code

    def codes(self, user_id: int) -> Sequence[int] | None:
        """The user's movies as vocabulary codes; None for a user the run does not hold."""
        slots = self.user_table
        if slots is not None:
            if not 0 <= user_id < len(slots) or (slot := slots[user_id]) < 0:
                return None
            row, partition = divmod(slot, self.run.partitions)
            return self.shards[partition].codes_at(row)
        shard = self.shard(partition_of(user_id, self.run.partitions))
        row = shard.row(user_id)
        return None if row is None else shard.codes_at(row)

    def answer(self, user_id: int) -> Answer:
        codes = self.codes(user_id)
        if codes is None:
            return Answer(user_id, self.variant, self.popular_text, POPULAR)
        return Answer(user_id, self.variant, b",".join(map(self._utf8.__getitem__, codes)), PERSONALIZED)

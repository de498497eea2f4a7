"""What `recommend` serves: the published runs held in memory, swapped whole when CURRENT changes.

Shards are read with parquet's dictionary codes (2 bytes a movie), never as
20 M Python strings: 1 M users fit in ~50 MB. A cold instance answers as soon
as the shard of the asked user is in memory and loads the rest in the
background; a new CURRENT is loaded completely before it replaces the served
one. docs/serving.md has the measurements behind both choices.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec import metrics
from movierec.errors import BadInput, MovierecError, NotFound, NotReady
from movierec.models.registry import load_popular
from movierec.partitioning import ab_bucket, partition_of
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
_USER_ID = re.compile(r"[0-9]{1,32}", re.ASCII)


def parse_user_id(text: str) -> int:
    """A user id as the API accepts it: ASCII digits only, below 2^63."""
    if not _USER_ID.fullmatch(text) or int(text) >= 2**63:
        raise BadInput(f"user id must be a non-negative decimal integer below 2^63, got {text[:40]!r}")
    return int(text)


@dataclass(frozen=True)
class Answer:
    user_id: int
    movies: list[str]
    source: str  # "personalized" or "popular"
    variant: str
    run_id: str
    model_version: str


class Shard:
    """One partition's users, ascending, and their movies as codes into the variant's vocabulary."""

    def __init__(self, user_ids: np.ndarray, offsets: np.ndarray, codes: np.ndarray):
        self.user_ids, self.offsets, self.codes = user_ids, offsets, codes

    def lookup(self, user_id: int) -> list[int] | None:
        i = int(self.user_ids.searchsorted(user_id))
        if i == len(self.user_ids) or self.user_ids[i] != user_id:
            return None
        return self.codes[self.offsets[i] : self.offsets[i + 1]].tolist()


class VariantIndex:
    """One run's recommendations, shard by shard; a missing shard is loaded on first use."""

    def __init__(self, store: Store, variant: Variant, run: Run, popular: list[str]):
        self.store, self.variant, self.run = store, variant, run
        self.popular = popular[: run.top_k]
        self.vocabulary: list[str] = []
        self._codes_of: dict[str, int] = {}
        self._shards: list[Shard | None] = [None] * run.partitions
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
        return self

    @property
    def complete(self) -> bool:
        return all(s is not None for s in self._shards)

    def _load(self, partition: int) -> Shard:
        key = shard_key(self.run.run_id, partition, self.run.partitions)
        table = pq.read_table(pa.BufferReader(self.store.get(key)), read_dictionary=["movies.list.element"])
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
        return code

    def lookup(self, user_id: int) -> list[str] | None:
        codes = self.shard(partition_of(user_id, self.run.partitions)).lookup(user_id)
        if codes is None:
            return None
        vocabulary = self.vocabulary
        return [vocabulary[c] for c in codes]


@dataclass(frozen=True)
class Published:
    raw: bytes
    published_at: float
    variants: list[VariantIndex]

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
        self._owner_pid: int | None = None

    def ensure_started(self) -> None:
        """Start the reload thread in this process (gunicorn forks workers after import)."""
        if self._owner_pid == os.getpid():
            return
        with self._lock:
            if self._owner_pid != os.getpid():
                self._owner_pid = os.getpid()
                self._loaded_once.clear()
                threading.Thread(target=self._reload_forever, name="recs-reload", daemon=True).start()

    def _reload_forever(self) -> None:
        while True:
            try:
                self.reload()
            except MovierecError as exc:  # store down, run missing: keep serving the last good publication
                metrics.RECOMMEND_RELOADS.labels("error").inc()
                _log.warning("loading recs/CURRENT failed (%s); still serving the previous one", exc)
            except Exception:
                metrics.RECOMMEND_RELOADS.labels("error").inc()
                _log.exception("loading recs/CURRENT failed; still serving the previous one")
            finally:
                self._loaded_once.set()
            time.sleep(self.reload_seconds)

    def reload(self) -> bool:
        """Load CURRENT if it changed; True if a new publication is now served."""
        try:
            raw = self.store.get(CURRENT_KEY)
        except NotFound:
            return False
        published = self._published
        if published is not None and raw == published.raw:
            if not all(index.complete for index in published.variants):
                for index in published.variants:  # finish a cold start's background load
                    index.load_all()
            return False
        current = json.loads(raw)
        indexes = [VariantIndex.open(self.store, v) for v in current_variants(current)]
        new = Published(raw, datetime.fromisoformat(current["published_at"]).timestamp(), indexes)
        if published is None:
            self._published = new  # cold start: answer now, shard by shard
            self._loaded_once.set()
        for index in indexes:
            index.load_all()
        self._published = new
        metrics.RECOMMEND_RELOADS.labels("loaded").inc()
        _log.info("serving %s", ", ".join(f"{i.variant.name}={i.variant.run_id}" for i in indexes))
        return True

    @property
    def ready(self) -> bool:
        return self._published is not None

    @property
    def warm(self) -> bool:
        """Everything served is in memory: an answer needs no waiting and no I/O."""
        published = self._published
        return published is not None and all(index.complete for index in published.variants)

    def run_age_seconds(self) -> float | None:
        return None if self._published is None else time.time() - self._published.published_at

    def recommend(self, user_id: int, *, wait: float = 10.0) -> Answer:
        self.ensure_started()
        self._loaded_once.wait(wait)
        published = self._published
        if published is None:
            raise NotReady("no recommendations published yet")
        index = published.pick(user_id)
        movies = index.lookup(user_id)
        source = "personalized"
        if movies is None:
            movies, source = index.popular, "popular"
        variant = index.variant
        return Answer(user_id, movies, source, variant.name, variant.run_id, variant.model_version)

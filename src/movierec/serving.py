"""What `recommend` serves: the published runs held in memory, swapped whole when CURRENT changes."""

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
import pyarrow.compute as pc

from movierec import metrics
from movierec.errors import BadInput, MovierecError, NotFound, NotReady
from movierec.models.registry import load_popular
from movierec.partitioning import ab_bucket
from movierec.recs import CURRENT_KEY, Variant, current_variants, load_run, shard_key
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


class VariantIndex:
    """One run's recommendations: sorted user ids and, per user, movie codes into one vocabulary."""

    def __init__(self, variant: Variant, table: pa.Table, popular: list[str], top_k: int):
        self.variant = variant
        table = table.sort_by("user_id")
        self.user_ids = table["user_id"].to_numpy()
        movies = table["movies"].combine_chunks()
        self.offsets = movies.offsets.to_numpy()
        encoded = pc.dictionary_encode(movies.flatten())
        self.vocabulary = encoded.dictionary.to_pylist()
        self.codes = encoded.indices.to_numpy()
        self.popular = popular[:top_k]

    def lookup(self, user_id: int) -> list[str] | None:
        i = int(np.searchsorted(self.user_ids, user_id))
        if i == len(self.user_ids) or self.user_ids[i] != user_id:
            return None
        vocabulary = self.vocabulary
        return [vocabulary[c] for c in self.codes[self.offsets[i] : self.offsets[i + 1]]]

    @classmethod
    def load(cls, store: Store, variant: Variant, top_k: int) -> VariantIndex:
        run = load_run(store, variant.run_id)
        tables = [
            store.get_parquet(shard_key(run.run_id, p, run.partitions)) for p in range(run.partitions)
        ]
        popular = load_popular(store, run.model_version)
        return cls(variant, pa.concat_tables(tables), popular, top_k)


@dataclass(frozen=True)
class Published:
    raw: bytes
    published_at: float
    variants: list[VariantIndex]

    def pick(self, user_id: int) -> VariantIndex:
        """The variant a user is in: a stable hash against the cumulative shares."""
        bucket, total = ab_bucket(user_id), 0.0
        for index in self.variants:
            total += index.variant.share
            if bucket < total:
                return index
        return self.variants[-1]


class RecommendService:
    """Holds the published runs and reloads them in the background when recs/CURRENT changes.

    A new CURRENT is loaded completely before it replaces the old one, so a
    request always sees one whole publication: no failed or mixed answers.
    """

    def __init__(self, store: Store, *, top_k: int = 20, reload_seconds: float = 5.0):
        self.store = store
        self.top_k = top_k
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
        if self._published is not None and raw == self._published.raw:
            return False
        current = json.loads(raw)
        indexes = [VariantIndex.load(self.store, v, self.top_k) for v in current_variants(current)]
        published_at = datetime.fromisoformat(current["published_at"]).timestamp()
        self._published = Published(raw, published_at, indexes)
        metrics.RECOMMEND_RELOADS.labels("loaded").inc()
        _log.info("serving %s", ", ".join(f"{i.variant.name}={i.variant.run_id}" for i in indexes))
        return True

    @property
    def ready(self) -> bool:
        return self._published is not None

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

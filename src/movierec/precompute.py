"""Score one user partition with a stored model and write its shard."""

from __future__ import annotations

import io
import logging
import re
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_http

from movierec.errors import BadInput, InvalidRun, NotFound
from movierec.models.registry import LoadedModel, load_model
from movierec.partitioning import partitions_of
from movierec.recs import Run, load_run, shard_key
from movierec.scoring import SeenIndex, movie_dtype, top_k_unseen
from movierec.snapshots import interactions_key, load_manifest
from movierec.store import Store

_log = logging.getLogger(__name__)
# 1024 users x 27,000 movies is a 110 MB float32 batch: large enough for an efficient
# matrix product, small enough that a worker's peak memory stays well under 1 GB.
BATCH_USERS = 1024
REQUEST_TYPE = "movierec.precompute.requested.v1"
# A partition request is a few hundred bytes; anything far larger is refused (413) before it is held.
MAX_REQUEST_BYTES = 64 * 1024
# Ids become store keys: a leading letter or digit keeps "." and ".." out.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)


def load_seen_index(store: Store, snapshot_id: str, user_ids: np.ndarray, movie_ids: np.ndarray) -> SeenIndex:
    """Seen movies per model user, read straight from the snapshot's parquet.

    At course scale the snapshot holds ~100 M rows: movie slugs are read as
    parquet dictionary codes and mapped once per row group, never turned into
    100 M Python strings; movie codes are kept as 2 bytes each, and the file is
    read by ranges, not held whole.
    """
    load_manifest(store, snapshot_id)  # only complete snapshots
    vocabulary = pa.array(np.asarray(movie_ids, dtype=str))
    counts = np.zeros(len(user_ids), np.int64)
    # Two columns of the snapshot, streamed by row group: only the 2-byte movie codes stay, in one
    # array sized from the footer; rows are sorted by user, so counts per user give the offsets.
    with store.open_input(interactions_key(snapshot_id)) as source:
        parquet = pq.ParquetFile(source, read_dictionary=["movie_id"])
        movies = np.empty(parquet.metadata.num_rows, movie_dtype(len(movie_ids)))
        filled, last = 0, 0
        for batch in parquet.iter_batches(batch_size=1 << 20, columns=["user_id", "movie_id"]):
            if not len(batch):
                continue
            mapping = pc.index_in(batch["movie_id"].dictionary, value_set=vocabulary)
            users = batch["user_id"].to_numpy()
            rows = np.searchsorted(user_ids, users)
            if mapping.null_count or rows.max() >= len(user_ids) or not np.array_equal(user_ids[rows], users):
                raise InvalidRun(f"snapshot {snapshot_id} has users or movies that model does not know")
            if rows[0] < last or np.any(rows[1:] < rows[:-1]):
                raise InvalidRun(f"snapshot {snapshot_id} is not sorted by user_id, as `movierec snapshot` writes it")
            end, last = filled + len(rows), rows[-1]
            movies[filled:end] = mapping.to_numpy()[batch["movie_id"].indices.to_numpy()]
            counts += np.bincount(rows, minlength=len(user_ids))
            filled = end
    return SeenIndex(np.concatenate([[0], np.cumsum(counts)]), movies)


@dataclass(frozen=True)
class ScoringContext:
    model: LoadedModel
    seen: SeenIndex


class ContextCache:
    """Model and seen-index per model version, built once per process (precompute instances are reused)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], ScoringContext] = {}

    def get(self, store: Store, model_version: str) -> ScoringContext:
        key = (store.uri, model_version)
        with self._lock:
            if key not in self._cache:
                self._cache = {}  # keep one: a worker's memory stays bounded across model versions
                model = load_model(store, model_version)
                seen = load_seen_index(store, model.card["snapshot_id"], model.user_ids, model.movie_ids)
                self._cache = {key: ScoringContext(model, seen)}
            return self._cache[key]


CONTEXTS = ContextCache()


def score_partition(ctx: ScoringContext, partition: int, partitions: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(user ids ascending, int64 [users, k] best movie indices, -1 padded) for one partition."""
    user_ids = ctx.model.user_ids
    users = np.flatnonzero(partitions_of(user_ids, partitions) == partition)
    best = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start : start + BATCH_USERS]
        best[start : start + len(batch)] = top_k_unseen(ctx.model.model.score(batch), ctx.seen, batch, k)
    return user_ids[users], best


def encode_shard(user_ids: np.ndarray, best: np.ndarray, movie_ids: np.ndarray) -> bytes:
    """The shard's parquet bytes (SHARD_SCHEMA when read back).

    Movies go in as dictionary codes over the catalogue and are written as
    parquet's dictionary encoding directly: no 20 M slugs are materialised, and
    without the stored Arrow schema they read back as plain strings.
    """
    valid = best >= 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    vocabulary = pa.array(np.asarray(movie_ids, dtype=str))
    codes = pa.DictionaryArray.from_arrays(pa.array(best[valid].astype(np.int32)), vocabulary)
    table = pa.table({"user_id": pa.array(user_ids, pa.int64()),
                      "movies": pa.ListArray.from_arrays(pa.array(offsets), codes)})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", store_schema=False)
    return sink.getvalue()


def precompute_partition(
    store: Store,
    *,
    run_id: str,
    partition: int,
    model_version: str | None = None,
    partitions: int | None = None,
    top_k: int | None = None,
) -> str:
    """Write the shard of one partition as the run's run.json says; a redelivered partition rewrites
    identical content. What the request says must agree with run.json: a stray or foreign event
    must not overwrite a validated shard with other settings, nor start a run nobody created."""
    run = _known_run(store, run_id)
    claims = {"model_version": model_version, "partitions": partitions, "top_k": top_k}
    wrong = [f"{name} {value!r} (run.json: {getattr(run, name)!r})"
             for name, value in claims.items() if value is not None and value != getattr(run, name)]
    if wrong:
        raise BadInput(f"request contradicts run {run_id}: {', '.join(wrong)}")
    if not 0 <= partition < run.partitions:
        raise BadInput(f"partition {partition} outside 0..{run.partitions - 1}")
    ctx = CONTEXTS.get(store, run.model_version)
    user_ids, best = score_partition(ctx, partition, run.partitions, run.top_k)
    key = shard_key(run_id, partition, run.partitions)
    store.put(key, encode_shard(user_ids, best, ctx.model.movie_ids))
    _log.info("wrote %s (%d users)", key, len(user_ids))
    return key


def _known_run(store: Store, run_id: str) -> Run:
    # BadInput (400), not NotFound (404): Knative retries a 404, and a run that does not exist
    # will not appear by retrying the same event.
    try:
        return load_run(store, run_id)
    except NotFound:
        raise BadInput(f"run {run_id} does not exist (no run.json)") from None
    except (ValueError, InvalidRun) as exc:  # an id the store refuses as a key, or a broken run.json
        raise BadInput(f"run {run_id}: {exc}") from None


def read_request_body(request) -> bytes | None:
    """A WSGI request's body, or None once it passes MAX_REQUEST_BYTES: read in bounded pieces,
    since a chunked body declares no length to check first."""
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return None
    body = bytearray()
    while chunk := request.stream.read(MAX_REQUEST_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            return None
    return bytes(body)


def parse_request(headers, body: bytes) -> dict:
    """The keyword arguments of `precompute_partition` from a precompute CloudEvent; BadInput if malformed.

    `top_k` is optional (None: the run's); ints must be JSON integers, so `true` is not partition 1.
    """
    try:
        event = from_http(dict(headers), body)
    except (ce_errors.GenericException, ValueError, TypeError) as exc:
        raise BadInput(f"not a CloudEvent: {exc}") from None
    except RecursionError:  # JSON nested thousands deep
        raise BadInput("not a CloudEvent: JSON nested too deeply") from None
    if event["type"] != REQUEST_TYPE:
        raise BadInput(f"event type {event['type']!r} is not {REQUEST_TYPE!r}")
    data = event.get_data()
    if not isinstance(data, dict):
        raise BadInput("data must be a JSON object")
    missing = [name for name in ("run_id", "model_version", "partition", "partitions") if name not in data]
    if missing:
        raise BadInput(f"data needs run_id, model_version, partition, partitions; missing {', '.join(missing)}")
    job = {name: data[name] for name in ("run_id", "model_version", "partition", "partitions")}
    job["top_k"] = data.get("top_k")
    for name in ("run_id", "model_version"):
        if not isinstance(job[name], str) or not _SAFE_ID.fullmatch(job[name]):
            raise BadInput(f"{name} must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit: "
                           f"{str(job[name])[:40]!r}")
    for name in ["partition", "partitions"] + ([] if job["top_k"] is None else ["top_k"]):
        if type(job[name]) is not int:  # JSON true is a bool, which isinstance(..., int) would let in
            raise BadInput(f"{name} must be an integer, not {job[name]!r}")
    if job["partitions"] < 1 or (job["top_k"] is not None and job["top_k"] < 1):
        raise BadInput("partitions and top_k must be positive")
    return job

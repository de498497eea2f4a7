"""Online evaluation: what `recommend` served, joined with the same users' later watches.

The stream's `recommendation request` lines say what a user was shown, when, how
fast, and with which status; they do not say which run or variant answered. That
follows from the published split, exactly as `recommend` chose it: the user's stable
hash against the shares of recs/CURRENT (or of the publication it replaced). An
answer is credited to the publication whose variant would have served exactly that
list; an answer that matches none (an error, a reload in progress) to the one in
effect at its time. `matched` tells the two apart.

Watch-through: an answer converts when the user starts watching one of its movies,
for the first time, within `window` after the answer. Answers whose window has not
fully passed in the log yet are not mature and are left out of the rate.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.errors import NotFound, NotReady
from movierec.events import SCHEMAS, event_keys
from movierec.models.registry import load_popular
from movierec.partitioning import ab_buckets
from movierec.recs import Variant, current_variants, load_run, read_current, shard_key
from movierec.store import Store

_log = logging.getLogger(__name__)

# Six hours: one viewing session with room for a pause (a feature film is about two hours,
# so a user who finishes one film and then starts a recommended one still counts), yet short
# enough that tomorrow's organic viewing is not credited to today's list. Fixed before any
# experiment, never tuned on its outcome.
WINDOW = timedelta(hours=6)
BUDGET_MS = 600  # the recommend latency budget (SPEC, alerts.yaml)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Publication:
    name: str  # "current" or "previous"
    published_at: datetime
    variants: list[Variant]


def publications(store: Store) -> list[Publication]:
    """recs/CURRENT and the publication it replaced, newest first."""
    current = read_current(store)
    found = [Publication("current", _aware(current["published_at"]), current_variants(current))]
    if previous := current.get("previous"):
        found.append(Publication("previous", _aware(previous["published_at"]), current_variants(previous)))
    return found


def _aware(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def assign(user_ids: np.ndarray, variants: list[Variant]) -> np.ndarray:
    """Index of each user's variant: `partitioning.ab_bucket` against the cumulative shares."""
    buckets = ab_buckets(user_ids)
    bounds = np.cumsum([v.share for v in variants])
    return np.minimum(np.searchsorted(bounds, buckets, side="right"), len(variants) - 1)


@dataclass
class Expected:
    """What one run serves the users in question: their own lists, or its popular fallback."""

    lists: dict[int, tuple[str, ...]]
    popular: tuple[str, ...]


def expected_answers(store: Store, run_id: str, users: np.ndarray) -> Expected:
    run = load_run(store, run_id)
    wanted = pa.array(np.unique(users))
    lists: dict[int, tuple[str, ...]] = {}
    for partition in range(run.partitions):
        table = store.get_parquet(shard_key(run_id, partition, run.partitions))
        table = table.filter(pc.is_in(table["user_id"], value_set=wanted))
        lists.update(zip(table["user_id"].to_pylist(), map(tuple, table["movies"].to_pylist())))
    return Expected(lists, tuple(load_popular(store, run.model_version)[: run.top_k]))


def read_events(store: Store, kind: str, columns: list[str]) -> pa.Table:
    keys = event_keys(store, kind)
    with ThreadPoolExecutor(max_workers=8) as pool:  # S3 latency, not bandwidth, bounds small files
        tables = list(pool.map(lambda k: store.get_parquet(k, columns=columns), keys))
    return pa.concat_tables(tables) if tables else SCHEMAS[kind].empty_table().select(columns)


def _deduplicated(table: pa.Table) -> pa.Table:
    """A redelivered event (same CloudEvent source and id) counts once. Grouped on the pair itself:
    ids may hold NUL, so a NUL-joined string would make source "a", id "b<NUL>c" and source
    "a<NUL>b", id "c" one event."""
    rows = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    first = rows.group_by(["event_source", "event_id"], use_threads=False).aggregate([("_row", "min")])
    return table.take(np.sort(first["_row_min"].to_numpy()))


def served_answers(store: Store, *, window: timedelta = WINDOW) -> pa.Table:
    """One row per recommendation answer in the log, attributed and scored; see the module doc."""
    reco = read_events(store, "reco", ["event_source", "event_id", "time", "user_id", "status", "movies", "latency_ms"])
    reco = _deduplicated(reco).sort_by("time") if reco.num_rows else reco
    users = reco["user_id"].to_numpy()
    times = reco["time"].to_numpy().astype("datetime64[us]")
    ok = reco["status"].to_numpy() == 200
    movies = [tuple(m or ()) for m in reco["movies"].to_pylist()]

    try:
        pubs = publications(store)
    except NotReady as exc:  # nothing published yet: every answer is unattributed
        _log.warning("no publication to attribute answers to: %s", exc)
        pubs = []
    expected: dict[str, Expected] = {}

    def expect(run_id: str) -> Expected:
        if run_id not in expected:
            try:
                expected[run_id] = expected_answers(store, run_id, users)
            except NotFound:  # a run deleted since: its answers stay unmatched
                expected[run_id] = Expected({}, ())
        return expected[run_id]

    n = len(users)
    pub_of, var_of = np.full(n, -1), np.full(n, -1)
    matched, personalized = np.zeros(n, bool), np.zeros(n, bool)
    assignments = [assign(users, p.variants) for p in pubs]
    for p, pub in enumerate(pubs):
        for v, variant in enumerate(pub.variants):
            rows = np.flatnonzero((assignments[p] == v) & ok & ~matched)
            if not len(rows):
                continue
            run = expect(variant.run_id)
            for row in rows:
                own = run.lists.get(int(users[row]))
                if movies[row] == (own if own is not None else run.popular):
                    pub_of[row], var_of[row], matched[row], personalized[row] = p, v, True, own is not None
    # Unmatched answers (errors among them): the publication in effect at their time.
    for p, pub in reversed(list(enumerate(pubs))):
        since = np.datetime64(pub.published_at.astimezone(UTC).replace(tzinfo=None), "us")
        rows = np.flatnonzero(~matched & (times >= since))
        pub_of[rows], var_of[rows] = p, assignments[p][rows]
    for row in np.flatnonzero(~matched & (pub_of >= 0) & ok):
        run_id = pubs[pub_of[row]].variants[var_of[row]].run_id
        personalized[row] = int(users[row]) in expect(run_id).lists

    def label(field: str) -> list[str]:
        return [getattr(pubs[p].variants[v], field) if p >= 0 else UNKNOWN for p, v in zip(pub_of, var_of)]

    converted, observed_until = _conversions(store, users, times, movies, ok, window)
    mature = times + np.timedelta64(window) <= observed_until if observed_until is not None else np.zeros(n, bool)
    return pa.table({
        "time": reco["time"],
        "day": pc.strftime(reco["time"], format="%Y-%m-%d"),
        "user_id": reco["user_id"],
        "status": reco["status"],
        "latency_ms": reco["latency_ms"],
        "publication": [pubs[p].name if p >= 0 else UNKNOWN for p in pub_of],
        "variant": label("name"),
        "run_id": label("run_id"),
        "model_version": label("model_version"),
        "source": np.where(personalized, "personalized", "popular").tolist(),
        "matched": matched,
        "mature": mature & ok,
        "converted": converted & mature & ok,
    })


def _conversions(store, users, times, movies, ok, window):
    """(converted per answer, the log's last event time): first watches within the window."""
    watch = read_events(store, "watch", ["user_id", "movie_id", "time"])
    if watch.num_rows == 0 or len(users) == 0:
        return np.zeros(len(users), bool), None
    observed_until = max(pc.max(watch["time"]).as_py(), pc.max(pa.array(times)).as_py())
    watch = watch.filter(pc.is_in(watch["user_id"], value_set=pa.array(np.unique(users))))
    first = watch.group_by(["user_id", "movie_id"]).aggregate([("time", "min")])
    rows = np.flatnonzero(ok)
    lengths = np.array([len(movies[r]) for r in rows], dtype=np.int64)
    shown = pa.table({
        "row": np.repeat(rows, lengths),
        "user_id": np.repeat(users[rows], lengths),
        "movie_id": pa.array([m for r in rows for m in movies[r]], pa.string()),
        "shown_at": np.repeat(times[rows], lengths),
    })
    joined = shown.join(first, keys=["user_id", "movie_id"], join_type="inner")
    shown_at = joined["shown_at"].to_numpy().astype("datetime64[us]")
    first_at = joined["time_min"].to_numpy().astype("datetime64[us]")
    hit = (first_at > shown_at) & (first_at <= shown_at + np.timedelta64(window))
    converted = np.zeros(len(users), bool)
    converted[joined["row"].to_numpy()[hit]] = True
    return converted, np.datetime64(observed_until, "us")


def summarize(answers: pa.Table, *, budget_ms: int = BUDGET_MS) -> list[dict]:
    """Per run, variant and day: answers, error, over-budget and personalized shares, watch-through."""
    columns = {name: answers[name].to_numpy(zero_copy_only=False) for name in answers.column_names}
    keys = list(zip(columns["run_id"], columns["model_version"], columns["variant"], columns["day"]))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    rows = []
    for (run_id, model_version, variant, day), index in sorted(groups.items()):
        index = np.asarray(index)
        ok = columns["status"][index] == 200
        mature = columns["mature"][index]
        rows.append({
            "run_id": run_id, "model_version": model_version, "variant": variant, "day": day,
            "answers": len(index),
            "users": len(np.unique(columns["user_id"][index])),
            "error_share": float(1 - ok.mean()),
            "over_budget_share": float((columns["latency_ms"][index] > budget_ms).mean()),
            "personalized_share": _share(columns["source"][index][ok] == "personalized"),
            "matched_share": _share(columns["matched"][index][ok]),
            "mature_answers": int(mature.sum()),
            "watched_answers": int(columns["converted"][index].sum()),
            "watch_through": _share(columns["converted"][index][mature]),
        })
    return rows


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def evaluate(store: Store, *, window: timedelta = WINDOW, budget_ms: int = BUDGET_MS, save: bool = True,
             answers: pa.Table | None = None) -> dict:
    """Run the online evaluation; with `save`, each run's rows go to recs/<run>/online/<time>.json."""
    answers = served_answers(store, window=window) if answers is None else answers
    rows = summarize(answers, budget_ms=budget_ms)
    evaluated_at = datetime.now(UTC)
    result = {
        "evaluated_at": evaluated_at.isoformat(),
        "window_hours": window.total_seconds() / 3600,
        "budget_ms": budget_ms,
        "answers": answers.num_rows,
        "rows": rows,
    }
    if save:  # one new file per evaluation: nothing in the store is overwritten
        stamp = f"{evaluated_at:%Y%m%dT%H%M%S%fZ}"
        for run_id in sorted({r["run_id"] for r in rows} - {UNKNOWN}):
            mine = result | {"rows": [r for r in rows if r["run_id"] == run_id]}
            store.put_new(f"recs/{run_id}/online/{stamp}.json", json.dumps(mine, indent=2).encode())
    return result

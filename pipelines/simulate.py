"""`movierec simulate`: an A/B test end to end on this machine, with users who react to what they are served.

The synthetic world's users keep the taste their history was drawn from (a movie's
broad appeal, its log-popularity, plus the world's taste weight x the hidden user-movie affinity). They
ask the real `recommend` function for recommendations, look down the list, and start
watching a movie with a probability that grows with that taste. Their requests and
watches go back through the real `ingest` function as stream lines, and the online
evaluation and A/B report then read them from the event log like any other stream.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import requests

from movierec.experiments import report
from movierec.experiments.abtest import Comparison, compare
from movierec.experiments.online import WINDOW, evaluate, served_answers, summarize
from movierec.processes import FunctionProcess
from movierec.recs import current_variants, read_current
from movierec.replay import replay
from movierec.store import open_store
from movierec.synthetic import SyntheticWorld, make_world, stream_lines
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish
from pipelines.snapshot import make_snapshot
from pipelines.train import train


@dataclass(frozen=True)
class Reaction:
    """How a simulated user responds to a list: P(watch movie at rank r) = look**r * sigmoid(bias + taste)."""

    bias: float = -5.0
    look: float = 0.85  # users look further down the list less and less
    start_minutes: float = 40.0  # mean delay from the answer to starting a movie

    def taste(self, world: SyntheticWorld, user: int, movies: np.ndarray) -> np.ndarray:
        appeal = np.log(world.popularity[movies] * len(world.movie_ids))  # 0 for an average movie
        return appeal + world.taste_weight * world.affinity(user, movies)  # the taste the history came from

    def watch_probability(self, world: SyntheticWorld, user: int, movies: np.ndarray) -> np.ndarray:
        logits = self.bias + self.taste(world, user, movies)
        return self.look ** np.arange(len(movies)) / (1 + np.exp(-logits))


@dataclass(frozen=True)
class SimulationResult:
    comparison: Comparison
    files: dict[str, Path]
    good_variant: str
    answers: int
    agreement: float  # share of answers the online evaluation attributes to the variant recommend named


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _watch_lines(user_id: int, slug: str, start: datetime, rng: np.random.Generator) -> list[tuple[datetime, str]]:
    first = int(rng.integers(0, 30))
    return [(start + timedelta(minutes=i), f"{_stamp(start + timedelta(minutes=i))},{user_id},GET /data/m/{slug}/{first + i}.mpg")
            for i in range(int(rng.integers(3, 9)))]


def simulate(store_uri: str, *, users: int = 600, movies: int = 300, days: int = 2, sessions: int = 3,
             good: str = "popularity", weak: str = "random", seed: int = 0, reaction: Reaction = Reaction(),
             out: Path = Path("simulate-report"), window: timedelta = WINDOW, log=print) -> SimulationResult:
    """History -> ingest -> snapshot -> train `weak` (A) and `good` (B) -> publish 50/50 -> sessions -> report."""
    store = open_store(store_uri)
    world = make_world(users=users, movies=movies, seed=seed)
    history = list(stream_lines(world, movies_per_user=10, seed=seed))
    seen = _seen(history)
    slugs = np.asarray(world.movie_ids)
    index_of = {slug: i for i, slug in enumerate(world.movie_ids)}
    # Sessions are dated after the publication, up to `days` ahead: this ingest must not quarantine them.
    with FunctionProcess("ingest", store=store_uri, env={"MOVIEREC_INGEST_FUTURE_HOURS": str(24 * days + 2)}) as ingest:
        stats = replay(ingest.url, history, source=f"movierec/simulate/{seed}/history")
        log(f"history: {stats.summary()}")
        manifest, _ = make_snapshot(store)
        runs = []
        for kind in (weak, good):
            card = train(store, snapshot_id=manifest["id"], kind=kind, seed=seed)
            run = start_run(store, card["version"], partitions=2, top_k=20)
            run_local(store, run)
            runs.append(run.run_id)
            log(f"{kind}: model {card['version']}, run {run.run_id}")
        publish(store, runs, shares=[0.5, 0.5])
        rng = np.random.default_rng(seed + 7)
        end = max(datetime.now(UTC).replace(tzinfo=None), max(_time(line) for line in history[-50:]))
        start = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        end = start + timedelta(days=days)
        latest_session = (end - start - window - timedelta(hours=1)).total_seconds()
        plan = [(user, start + timedelta(seconds=int(rng.uniform(0, latest_session))))  # whole seconds, as logged
                for user in range(users) for _ in range(sessions)]
        plan.sort(key=lambda p: p[1])
        with FunctionProcess("recommend", store=store_uri) as recommend:
            served = _ask(recommend.url, [world.first_user_id + u for u, _ in plan])
        lines: list[tuple[datetime, str]] = []
        for (user, when), (status, movies_served, _variant, ms) in zip(plan, served):
            user_id = world.first_user_id + user
            result = ", ".join(movies_served) if status == 200 else "error"
            line = f"{_stamp(when)},{user_id},recommendation request simulate, status {status}, result: {result}, {ms} ms"
            lines.append((when, line))
            if status != 200 or not movies_served:
                continue
            shown = np.array([index_of[m] for m in movies_served])
            for movie in shown[rng.random(len(shown)) < reaction.watch_probability(world, user, shown)]:
                if slugs[movie] not in seen.setdefault(user_id, set()):
                    seen[user_id].add(slugs[movie])
                    delay = timedelta(minutes=float(rng.exponential(reaction.start_minutes)))
                    lines += _watch_lines(user_id, slugs[movie], when + delay, rng)
        lines += _organic(world, reaction, seen, start, end, rng)
        lines.sort(key=lambda line: line[0])
        stats = replay(ingest.url, [text for _, text in lines], source=f"movierec/simulate/{seed}/sessions")
        log(f"sessions: {len(plan):,} answers, {stats.summary()}")
    answers = served_answers(store, window=window)
    evaluate(store, window=window, answers=answers)  # stored beside the runs, as `online-eval` does
    current = answers.filter(answers["publication"].to_numpy(zero_copy_only=False) == "current")
    variants = [(v.name, v.run_id, v.model_version, v.share) for v in current_variants(read_current(store))]
    comparison = compare(current, variants=variants, seed=seed)
    files = report.write(comparison, summarize(current), out)
    attributed = dict(zip(zip(answers["user_id"].to_pylist(), answers["time"].to_pylist()), answers["variant"].to_pylist()))
    named = [attributed.get((world.first_user_id + u, when)) == s[2] for (u, when), s in zip(plan, served)]
    return SimulationResult(comparison, files, variants[1][0], len(plan), float(np.mean(named)))


def _time(line: str) -> datetime:
    return datetime.fromisoformat(line.split(",", 1)[0])


def _seen(lines: list[str]) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}
    for line in lines:
        parts = line.split(",", 2)
        if len(parts) == 3 and parts[2].startswith("GET /data/m/") and parts[1].isdigit():
            seen.setdefault(int(parts[1]), set()).add(parts[2][len("GET /data/m/"):].rsplit("/", 1)[0])
    return seen


def _ask(url: str, user_ids: list[int]) -> list[tuple[int, list[str], str, int]]:
    """(status, movies, X-Variant, latency in ms) for each user, asked over HTTP, four at a time."""
    session = requests.Session()

    def one(user_id: int):
        answer = session.get(f"{url}/recommend/{user_id}", timeout=30)
        ms = max(1, math.ceil(answer.elapsed.total_seconds() * 1000))
        movies = answer.text.split(",") if answer.status_code == 200 and answer.text else []
        return answer.status_code, movies, answer.headers.get("X-Variant", ""), ms

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, user_ids))


def _organic(world: SyntheticWorld, reaction: Reaction, seen: dict[int, set[str]], start: datetime,
             end: datetime, rng: np.random.Generator) -> list[tuple[datetime, str]]:
    """Viewing nobody recommended (about one film a user a day): the noise both variants share."""
    lines: list[tuple[datetime, str]] = []
    all_movies = np.arange(len(world.movie_ids))
    span = (end - start).total_seconds()
    for user in range(world.user_vectors.shape[0]):
        user_id = world.first_user_id + user
        taste = reaction.taste(world, user, all_movies) + rng.gumbel(size=len(all_movies))
        count = rng.poisson(span / 86_400)
        for movie in np.argsort(-taste)[: count * 3]:  # the best-liked of those not seen yet
            slug = world.movie_ids[movie]
            if count and slug not in seen.setdefault(user_id, set()):
                seen[user_id].add(slug)
                count -= 1
                lines += _watch_lines(user_id, slug, start + timedelta(seconds=float(rng.uniform(0, span))), rng)
    last_user = world.first_user_id
    lines += _watch_lines(last_user, world.movie_ids[0], end - timedelta(minutes=10), rng)  # the log runs to `end`
    return lines

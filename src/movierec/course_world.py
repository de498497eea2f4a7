"""A course-shaped synthetic stream: the size and shape the service is built for, written fast.

1 M users, 27,000 movies and ~30 M lines by default, generated in vectorised chunks
(the per-user generator in `synthetic.py` serves the demo, not this size):

- power-law popularity; users with tastes (a latent vector each; a session picks among
  popularity-sampled candidates by taste);
- new releases: a few hundred movies come out during the period and are boosted for days;
- heavy-tailed activity: most users have a few sessions, some have many;
- one line per watched minute; a rating for some sessions; recommendation-request lines;
  `create_account` for users who join during the period; one line in ~1,000 malformed.

Sessions are emitted in start-time order (lines of overlapping sessions are not interleaved),
as a stream replay needs. `future_truth` gives, for a time cut, what each user first watched
after it: the ground truth of the course-scale benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from movierec.synthetic import WORDS

START = datetime(2026, 11, 1)
DAY = 86_400
MINUTES_MEAN = 6.0  # watched minutes a session (geometric): 30 M lines hold ~4 M sessions
RATED_SHARE = 0.2  # sessions that end with a rating
REQUEST_SHARE = 0.25  # sessions that start with a recommendation request
TASTE = 3.0  # how much taste counts against popularity


@dataclass(frozen=True)
class CourseWorld:
    """Every session of the period, in start-time order, and the hidden world behind them."""

    movie_ids: np.ndarray  # str [movies]
    joined: np.ndarray  # [users] seconds after START a user created an account (negative: before the period)
    user: np.ndarray  # [sessions]
    movie: np.ndarray
    start: np.ndarray  # seconds after START
    minutes: np.ndarray
    rating: np.ndarray  # 0: not rated
    days: int

    @property
    def n_users(self) -> int:
        return len(self.joined)


def _slugs(n: int, rng: np.random.Generator) -> np.ndarray:
    words = np.asarray(WORDS)
    first, second = rng.integers(0, len(words), n), rng.integers(0, len(words), n)
    years = rng.integers(1950, 2027, n)
    # the index makes every slug unique, as the stream's ids are
    return np.asarray([f"{words[a]}+{words[b]}+{i}+{y}" for i, (a, b, y) in enumerate(zip(first, second, years))])


def make_course_world(*, users: int = 1_000_000, movies: int = 27_000, lines: int = 30_000_000, days: int = 30,
                      dim: int = 16, releases: int = 800, seed: int = 0, chunk: int = 20_000) -> CourseWorld:
    """Sessions sized so that their lines (watch minutes, ratings, requests) come to about `lines`."""
    rng = np.random.default_rng(seed)
    by_rank = rng.permutation(movies)  # the movie at each popularity rank
    movie_vectors = (rng.normal(size=(movies, dim)) / np.sqrt(dim)).astype(np.float32)
    user_vectors = rng.normal(size=(users, dim)).astype(np.float32)
    new = rng.choice(movies, size=min(releases, movies // 10), replace=False)
    release = np.full(movies, -np.inf)
    release[new] = rng.uniform(-10, days, size=len(new)) * DAY  # out during (or just before) the period
    activity = rng.lognormal(0.0, 1.0, users)  # heavy-tailed sessions per user
    per_session = MINUTES_MEAN + RATED_SHARE + REQUEST_SHARE
    counts = np.maximum(1, np.round(activity * lines / per_session / activity.sum())).astype(np.int64)
    user = np.repeat(np.arange(users), counts)
    joined = rng.uniform(-5 * days, days, users) * DAY
    first = np.maximum(joined, 0)[user]
    start = first + rng.random(len(user)) * (days * DAY - first)
    movie = np.empty(len(user), np.int64)
    for lo in range(0, len(user), chunk):  # candidates by popularity and among new releases; the pick by taste
        hi = min(lo + chunk, len(user))
        # Zipf-like: rank floor((movies + 1) ** u) - 1 has probability ~ 1 / (rank + 1.5)
        popular = by_rank[(np.float_power(movies + 1, rng.random((hi - lo, 48))) - 1).astype(np.int64)]
        candidates = np.hstack([popular, rng.choice(new, (hi - lo, 16))])
        taste = (movie_vectors[candidates] @ user_vectors[user[lo:hi], :, None])[..., 0]
        age = start[lo:hi, None] - release[candidates]
        boost = np.where(age < 0, -np.inf, np.where(np.isinf(age), 0.0, 4.0 * np.exp(-age / (4 * DAY)) - 2.0))
        logits = TASTE * taste + boost + rng.gumbel(size=taste.shape)
        movie[lo:hi] = candidates[np.arange(hi - lo), np.argmax(logits, 1)]
    minutes = np.minimum(rng.geometric(1 / MINUTES_MEAN, len(user)), 180)
    affinity = np.einsum("sd,sd->s", user_vectors[user], movie_vectors[movie])
    noisy = np.clip(np.rint(3 + 2.0 * affinity + rng.normal(0, 0.7, len(user))), 1, 5)
    rating = np.where(rng.random(len(user)) < RATED_SHARE, noisy, 0)
    order = np.argsort(start, kind="stable")
    return CourseWorld(_slugs(movies, rng), joined, user[order], movie[order], start[order].astype(np.int64),
                       minutes[order].astype(np.int64), rating[order].astype(np.int64), days)


def stream_lines(world: CourseWorld, *, until: int | None = None, seed: int = 0,
                 bad_every: int = 1000) -> Iterator[str]:
    """The stream's lines for every session starting before `until` (seconds after START; default all)."""
    rng = np.random.default_rng(seed)
    end = len(world.start) if until is None else int(np.searchsorted(world.start, until))
    announced = np.zeros(world.n_users, bool)
    first_minute = rng.integers(0, 60, end)
    requested = rng.random(end) < REQUEST_SHARE
    emitted = 0
    for lo in range(0, end, 50_000):
        hi = min(lo + 50_000, end)
        n = world.minutes[lo:hi]
        # every watch line's time, formatted at once: row r belongs to session lo + session_of[r]
        offsets = np.concatenate([[0], np.cumsum(n)])
        step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], n)
        seconds = np.repeat(world.start[lo:hi], n) + 60 * step
        stamps = _clock(seconds).tolist()
        rated_at = _clock(world.start[lo:hi] + 60 * n).tolist()
        for i in range(lo, hi):
            j = i - lo
            user, slug = int(world.user[i]), world.movie_ids[world.movie[i]]
            first = int(first_minute[i])
            when = stamps[offsets[j]]
            if not announced[user] and world.joined[user] >= 0:
                yield f"{when},{user},GET /create_account"
            announced[user] = True
            if requested[i]:
                yield f"{when},{user},recommendation request movierec:8082, status 200, result: {slug}, 12 ms"
            for k in range(int(n[j])):
                emitted += 1
                stamp = stamps[offsets[j] + k]
                mpg = "mpg" if emitted % bad_every == 0 else ".mpg"  # one line in bad_every malformed
                yield f"{stamp},{user},GET /data/m/{slug}/{first + k}{mpg}"
            if world.rating[i]:
                yield f"{rated_at[j]},{user},GET /rate/{slug}={world.rating[i]}"


def _clock(seconds: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.datetime64(START, "s") + seconds.astype("timedelta64[s]"), unit="s")


def future_truth(world: CourseWorld, cut: int) -> dict[int, set[str]]:
    """For each user active after `cut`: the movies first watched then that they had not watched before."""
    before = world.start < cut
    seen = set(zip(world.user[before].tolist(), world.movie[before].tolist()))
    truth: dict[int, set[str]] = {}
    for user, movie in zip(world.user[~before].tolist(), world.movie[~before].tolist()):
        if (user, movie) not in seen:
            truth.setdefault(user, set()).add(str(world.movie_ids[movie]))
    return truth

"""A built-in synthetic stream: power-law popularity, users with tastes, watch minutes and ratings.

It needs no network and no dataset, so the demo and the tests always have data.
Users prefer movies whose latent vector matches theirs; the catalog's
popularity follows a power law, as real streams do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

WORDS = ["night", "day", "river", "city", "ghost", "king", "queen", "summer", "winter", "dark", "light", "lost", "last", "first", "star", "road", "house", "garden", "storm", "silent", "wild", "blue", "red", "golden", "iron", "glass", "secret", "long", "little", "great", "broken"]
START = datetime(2026, 11, 1)


@dataclass(frozen=True)
class SyntheticWorld:
    """The hidden truth behind the stream: tastes and popularity, kept for simulations and tests."""

    movie_ids: list[str]
    popularity: np.ndarray  # [n_movies], sums to 1
    movie_vectors: np.ndarray  # [n_movies, dim]
    user_vectors: np.ndarray  # [n_users, dim]
    first_user_id: int
    taste_weight: float = 3.0  # how much personal taste counts against popularity when choosing
    def affinity(self, user: int, movies: np.ndarray) -> np.ndarray:
        return self.movie_vectors[movies] @ self.user_vectors[user]


def make_world(*, users: int = 1000, movies: int = 400, dim: int = 8, seed: int = 0) -> SyntheticWorld:
    rng = np.random.default_rng(seed)
    years = rng.integers(1950, 2026, size=movies)
    slugs, taken = [], set()
    for i in range(movies):
        slug = f"{'+'.join(rng.choice(WORDS, size=rng.integers(1, 4)))}+{years[i]}"
        while slug in taken:
            slug = f"the+{slug}"
        taken.add(slug)
        slugs.append(slug)
    popularity = 1.0 / np.arange(1, movies + 1) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())
    return SyntheticWorld(
        movie_ids=slugs,
        popularity=popularity,
        movie_vectors=rng.normal(size=(movies, dim)) / np.sqrt(dim),
        user_vectors=rng.normal(size=(users, dim)),
        first_user_id=1000,
    )


def stream_lines(world: SyntheticWorld, *, movies_per_user: int = 20, seed: int = 0, bad_every: int = 997):
    """Yield stream lines, in time order per user; one in `bad_every` lines is malformed on purpose."""
    rng = np.random.default_rng(seed + 1)
    n_users, n_movies = world.user_vectors.shape[0], len(world.movie_ids)
    log_pop = np.log(world.popularity)
    emitted = 0
    for user in range(n_users):
        user_id = world.first_user_id + user
        count = int(np.clip(rng.lognormal(np.log(movies_per_user), 0.6), 3, n_movies // 2))
        affinity = world.movie_vectors @ world.user_vectors[user]
        chosen = _drifting_history(world, user, count, log_pop, rng)
        when = START + timedelta(seconds=float(rng.uniform(0, 20 * 86_400)))
        yield f"{_time(when)},{user_id},GET /create_account"
        for movie in chosen:
            slug = world.movie_ids[movie]
            first = int(rng.integers(0, 60))
            for minute in range(first, first + int(rng.integers(2, 12))):
                when += timedelta(seconds=60)
                emitted += 1
                if emitted % bad_every == 0:
                    yield f"{_time(when)[:8]}x{_time(when)[9:]},{user_id},GET /data/m/{slug}/{minute}.mpg"
                else:
                    yield f"{_time(when)},{user_id},GET /data/m/{slug}/{minute}.mpg"
            if rng.random() < 0.5:
                rating = int(np.clip(np.rint(3 + 1.2 * affinity[movie] + rng.normal(0, 0.7)), 1, 5))
                yield f"{_time(when)},{user_id},GET /rate/{slug}={rating}"
            when += timedelta(seconds=float(rng.exponential(3600)))


def _drifting_history(world: SyntheticWorld, user: int, count: int, log_pop: np.ndarray, rng) -> list[int]:
    """Movies in watch order, drawn without replacement while the user's taste drifts from a
    random start to their true (current) taste: recent history says more than old history,
    as in real streams."""
    start = rng.normal(size=world.user_vectors.shape[1])
    available = np.ones(len(log_pop), dtype=bool)
    chosen = []
    for step in range(count):
        share = step / max(count - 1, 1)
        taste = (1 - share) * start + share * world.user_vectors[user]
        logits = log_pop + world.taste_weight * (world.movie_vectors @ taste) + rng.gumbel(size=len(log_pop))
        movie = int(np.argmax(np.where(available, logits, -np.inf)))
        available[movie] = False
        chosen.append(movie)
    return chosen


def _time(when: datetime) -> str:
    """The stream's own format: seconds are omitted when they are zero."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return text.removesuffix(":00")

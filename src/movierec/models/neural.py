"""movierec's model: a next-items forecasting autoencoder for ranking, BPMF for explicit ratings.

`NeuralRecommender.score` ranks movies from implicit feedback (every watch or rating,
newest weighted highest); `predict_rating` predicts explicit ratings. Why this
architecture: docs/model.md and `card_notes()`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from movierec.models.base import Interactions, Progress, Recommender
from movierec.models.bpmf import BPMF
from movierec.models.forecast_net import ForecastNet, History, bag, forecast_loss, time_buckets, time_context

STATE_FILE, PARAMS_FILE = "neural.pt", "neural.json"


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run torch with n threads (reproducible results need a fixed count), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _progress_bar(progress: Progress | None, label: str) -> Iterator[Progress]:
    """The caller's progress callback, or a rich progress bar of our own."""
    if progress is not None:
        yield progress
        return
    from rich.progress import Progress as RichProgress

    with RichProgress(transient=True) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)


class NeuralRecommender(Recommender):
    """Recency-weighted forecasting autoencoder (ranking) with a BPMF rating head."""

    kind: ClassVar[str] = "forecast-dae"

    def __init__(self, *, hidden: int = 512, decay: float = 0.95, epochs: int = 100, lr: float = 5e-3,
                 dropout: float = 0.3, buckets: int = 40, context_widths: tuple[int, ...] = (0, 2, 8),
                 target_share: float = 0.25, rating_head: bool = True, rating_dim: int = 20,
                 rating_samples: int = 80, cuts: int = 1, threads: int | None = None) -> None:
        self.cuts = cuts
        self.hidden, self.decay, self.epochs, self.lr, self.dropout = hidden, decay, epochs, lr, dropout
        self.buckets, self.context_widths, self.target_share = buckets, tuple(context_widths), target_share
        self.rating_head, self.rating_dim, self.rating_samples = rating_head, rating_dim, rating_samples
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.timings: dict[str, float] = {}

    def params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden, "decay": self.decay, "epochs": self.epochs, "lr": self.lr,
            "dropout": self.dropout, "cuts": self.cuts, "buckets": self.buckets, "context_widths": list(self.context_widths),
            "target_share": self.target_share, "rating_head": self.rating_head,
            "rating_dim": self.rating_dim, "rating_samples": self.rating_samples,
        }

    @staticmethod
    def card_notes() -> dict[str, str]:
        """Why this architecture, for the model card (measurements in docs/model.md)."""
        return {
            "ranking": "Mult-DAE-style autoencoder over recency-weighted history, trained to forecast each "
                       "user's next items after random cut points (not to reconstruct the history); chosen "
                       "because the forecasting objective lifted validation NDCG@20 well past reconstruction "
                       "training and past tuned EASE/ALS on ml-100k and ml-latest-small.",
            "time_context": "adds a learned mix of each movie's popularity around the user's latest time.",
            "ratings": "BPMF by Gibbs sampling in torch; averaging posterior samples beat point-estimate MF.",
        }

    # ---- training -------------------------------------------------------------------------
    def fit(self, data: Interactions, *, seed: int = 0, progress: Progress | None = None) -> None:
        with _threads(self.threads), _progress_bar(progress, "training forecast-dae") as report:
            torch.manual_seed(seed)
            start = time.perf_counter()
            rank_share = 0.8 if self.rating_head and np.isfinite(data.rating).any() else 1.0
            self._fit_ranking(data, np.random.default_rng(seed), lambda f: report(rank_share * f))
            self.timings = {"ranking_seconds": time.perf_counter() - start}
            self.rating_model: BPMF | None = None
            if rank_share < 1.0:
                start = time.perf_counter()
                self._fit_ratings(data, seed, lambda f: report(rank_share + (1 - rank_share) * f))
                self.timings["rating_seconds"] = time.perf_counter() - start
            report(1.0)

    def _fit_ranking(self, data: Interactions, rng: np.random.Generator, report: Progress) -> None:
        self.n_movies = data.n_movies
        self.history = History.build(data.user_idx, data.movie_idx, data.last_time, data.n_users)
        self.edges = time_buckets(data.last_time, self.buckets)
        context = time_context(np.searchsorted(self.edges, data.last_time), data.movie_idx,
                               self.buckets, data.n_movies, self.context_widths)
        self.net = ForecastNet(data.n_movies, self.hidden, torch.from_numpy(context))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, foreach=True)
        lengths = self.history.lengths()
        users = np.flatnonzero(lengths >= 3)
        if len(users) == 0:
            return
        row = np.repeat(np.arange(len(users)), lengths[users])
        position = np.concatenate([np.arange(n) for n in lengths[users]])
        movies = np.concatenate([self.history.movies[self.history.indptr[u]:self.history.indptr[u + 1]] for u in users])
        times = np.concatenate([self.history.times[self.history.indptr[u]:self.history.indptr[u + 1]] for u in users])
        if self.cuts > 1:  # several independent cut points per user and step
            offset = np.repeat(np.arange(self.cuts) * len(users), len(row))
            row, position = np.tile(row, self.cuts) + offset, np.tile(position, self.cuts)
            movies, times, users = np.tile(movies, self.cuts), np.tile(times, self.cuts), np.tile(users, self.cuts)
        n = lengths[users]
        self.net.train()
        for epoch in range(self.epochs):
            low = np.maximum(1, (0.5 * n).astype(np.int64))
            cut = low + (rng.random(len(users)) * (n - low)).astype(np.int64)
            horizon = np.maximum(1, np.ceil(self.target_share * cut).astype(np.int64))
            cut_r, horizon_r = cut[row], horizon[row]
            before = position < cut_r
            after = (position >= cut_r) & (position < cut_r + horizon_r)
            kept = before & (rng.random(len(row)) >= self.dropout)
            inputs = bag(row[kept], movies[kept], self.decay ** (cut_r - 1 - position)[kept], len(users))
            seen = torch.zeros(len(users), data.n_movies, dtype=torch.bool)
            seen[torch.from_numpy(row[before]), torch.from_numpy(movies[before])] = True
            target = torch.zeros(len(users), data.n_movies)
            target[torch.from_numpy(row[after]), torch.from_numpy(movies[after])] = 1.0
            bucket = torch.from_numpy(np.searchsorted(self.edges, times[before & (position == cut_r - 1)]))
            loss = forecast_loss(self.net(inputs, bucket), seen, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            report((epoch + 1) / self.epochs)
        self.net.eval()

    def _fit_ratings(self, data: Interactions, seed: int, report: Progress) -> None:
        rated = np.isfinite(data.rating)
        self.rating_model = BPMF(dim=self.rating_dim, samples=self.rating_samples)
        self.rating_model.fit(data.user_idx[rated], data.movie_idx[rated], data.rating[rated],
                              data.n_users, data.n_movies, seed=seed, progress=report)

    # ---- inference ------------------------------------------------------------------------
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx, dtype=np.int64)
        lengths = self.history.lengths()[user_idx]
        rows = np.repeat(np.arange(len(user_idx)), lengths)
        movies = np.concatenate([self.history.movies[self.history.indptr[u]:self.history.indptr[u + 1]]
                                 for u in user_idx] or [np.zeros(0, np.int64)])
        recency = np.concatenate([np.arange(n)[::-1] for n in lengths] or [np.zeros(0, np.int64)])
        last = np.array([self.history.times[self.history.indptr[u + 1] - 1] if n else self.history.times.max(initial=0)
                         for u, n in zip(user_idx, lengths)], dtype=np.int64)
        with _threads(self.threads), torch.no_grad():
            logits = self.net(bag(rows, movies, self.decay ** recency, len(user_idx)),
                              torch.from_numpy(np.searchsorted(self.edges, last)))
        return logits.numpy().astype(np.float32)

    def predict_rating(self, user_idx: np.ndarray, movie_idx: np.ndarray) -> np.ndarray:
        """Predicted explicit rating for each (user, movie) pair."""
        if self.rating_model is None:
            raise ValueError("this model was fitted without ratings, so it has no rating head")
        return self.rating_model.predict(user_idx, movie_idx)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        state: dict[str, Any] = {
            "net": self.net.state_dict(),
            "history": {k: torch.from_numpy(getattr(self.history, k)) for k in ("indptr", "movies", "times")},
            "edges": torch.from_numpy(self.edges),
        }
        if self.rating_model is not None:
            rm = self.rating_model
            state["rating"] = {"users": rm.user_samples, "movies": rm.movie_samples, "user_bias": rm.user_bias,
                               "movie_bias": rm.movie_bias,
                               "scalars": torch.tensor([rm.mean_rating, rm.low, rm.high], dtype=torch.float64)}
        torch.save(state, Path(directory) / STATE_FILE)
        meta = {"kind": self.kind, "params": self.params(), "n_movies": self.n_movies, "timings": self.timings}
        (Path(directory) / PARAMS_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> NeuralRecommender:
        meta = json.loads((Path(directory) / PARAMS_FILE).read_text())
        state = torch.load(Path(directory) / STATE_FILE, weights_only=True)
        params = meta["params"]
        model = cls(**{**params, "context_widths": tuple(params["context_widths"])})
        model.n_movies, model.timings = meta["n_movies"], meta.get("timings", {})
        model.history = History(**{k: v.numpy() for k, v in state["history"].items()})
        model.edges = state["edges"].numpy()
        model.net = ForecastNet(model.n_movies, model.hidden, state["net"]["context"])
        model.net.load_state_dict(state["net"])
        model.net.eval()
        model.rating_model = None
        if "rating" in state:
            r = state["rating"]
            rm = BPMF(dim=model.rating_dim, samples=model.rating_samples)
            rm.user_samples, rm.movie_samples = r["users"], r["movies"]
            rm.user_bias, rm.movie_bias = r["user_bias"], r["movie_bias"]
            rm.mean_rating, rm.low, rm.high = (float(x) for x in r["scalars"])
            model.rating_model = rm
        return model


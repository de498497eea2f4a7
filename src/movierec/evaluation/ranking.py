"""Fit, rank and score one model on a temporal split; tune a peer on the validation split."""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from movierec.evaluation.metrics import RankingResult, evaluate_lists, interaction_matrix, top_k
from movierec.evaluation.peers import PeerSpec
from movierec.models.base import Interactions

_log = logging.getLogger(__name__)
K = 20


def truth_sets(test: Interactions) -> tuple[np.ndarray, list[set[int]]]:
    """The users with held-out rows and each one's set of held-out movies."""
    users = np.unique(test.user_idx)
    order = np.argsort(test.user_idx, kind="stable")
    bounds = np.searchsorted(test.user_idx[order], users, side="left").tolist() + [test.nnz]
    movies = test.movie_idx[order]
    return users, [set(movies[a:b].tolist()) for a, b in itertools.pairwise(bounds)]


def rank_users(model: Any, train: Interactions, users: np.ndarray, *, k: int = K, batch: int = 1024) -> np.ndarray:
    """Top-k movies for `users`, excluding what they have in `train`."""
    seen = interaction_matrix(train)
    lists = [top_k(model.score(users[i:i + batch]), seen[users[i:i + batch]], k) for i in range(0, len(users), batch)]
    return np.concatenate(lists) if lists else np.zeros((0, k), dtype=np.int64)


@dataclass(frozen=True)
class Evaluated:
    result: RankingResult
    fit_seconds: float


def fit_and_evaluate(make: Callable[[], Any], train: Interactions, test: Interactions, *, seed: int = 0) -> Evaluated:
    model = make()
    start = time.perf_counter()
    model.fit(train, seed=seed)
    seconds = time.perf_counter() - start
    users, truth = truth_sets(test)
    return Evaluated(evaluate_lists(rank_users(model, train, users), truth, train.n_movies, K), seconds)


@dataclass(frozen=True)
class Tuned:
    name: str
    params: dict[str, Any]
    validation_ndcg: float
    tried: int
    test: Evaluated


def tune_and_test(
    spec: PeerSpec, fit_part: Interactions, validation: Interactions, train: Interactions, test: Interactions,
    *, seed: int = 0,
) -> Tuned:
    """Pick the grid point with the best validation NDCG@20, refit it on all of train, score the test part."""
    best_params, best_ndcg = spec.grid[0], -1.0
    for params in spec.grid:
        ndcg = fit_and_evaluate(functools.partial(spec.make, **params), fit_part, validation, seed=seed).result.ndcg
        _log.info("%s %s validation NDCG@20 %.4f", spec.name, params, ndcg)
        if ndcg > best_ndcg:
            best_params, best_ndcg = params, ndcg
    tested = fit_and_evaluate(functools.partial(spec.make, **best_params), train, test, seed=seed)
    return Tuned(spec.name, best_params, best_ndcg, len(spec.grid), tested)

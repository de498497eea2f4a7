"""The neural model on a small real slice of ml-100k: it learns, it round-trips, it is reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.evaluation.data import load_movielens
from movierec.evaluation.peers import Popularity
from movierec.evaluation.ranking import fit_and_evaluate
from movierec.evaluation.split import temporal_split
from movierec.models.neural import NeuralRecommender

ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"
FAST = {"epochs": 40, "lr": 1e-2, "hidden": 64, "rating_samples": 20}


@pytest.fixture(scope="module")
def small():
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100k not found at {ML100K} (internal test data in ../shared/datasets)")
    data = load_movielens(ML100K)
    return data.subset(data.user_idx < 300)  # 300 users, same movie index space


@pytest.mark.slow  # trains the network: tens of seconds; not in `make test-fast`
def test_beats_popularity_on_a_slice(small) -> None:
    train, test = temporal_split(small)
    ours = fit_and_evaluate(lambda: NeuralRecommender(rating_head=False, **FAST), train, test, seed=0)
    popular = fit_and_evaluate(Popularity, train, test)
    assert ours.result.ndcg > popular.result.ndcg * 1.2, (ours.result.ndcg, popular.result.ndcg)


@pytest.mark.slow  # trains the network: tens of seconds; not in `make test-fast`
def test_save_load_same_scores_and_ratings(small, tmp_path: Path) -> None:
    model = NeuralRecommender(**FAST)
    model.fit(small, seed=3, progress=lambda fraction: None)
    users = np.arange(0, 300, 7)
    model.save(tmp_path)
    loaded = NeuralRecommender.load(tmp_path)
    scores = model.score(users)
    assert scores.dtype == np.float32 and scores.shape == (len(users), small.n_movies)
    np.testing.assert_array_equal(loaded.score(users), scores)
    pairs = (small.user_idx[:50], small.movie_idx[:50])
    np.testing.assert_array_equal(loaded.predict_rating(*pairs), model.predict_rating(*pairs))
    assert loaded.params() == model.params() and NeuralRecommender.kind == "forecast-dae"


def test_reproducible_from_seed(small) -> None:
    runs = []
    for _ in range(2):
        model = NeuralRecommender(rating_head=False, **{**FAST, "epochs": 5})
        model.fit(small, seed=7, progress=lambda fraction: None)
        runs.append(model.score(np.arange(20)))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.slow  # trains the network: tens of seconds; not in `make test-fast`
def test_rating_head_beats_global_mean(small) -> None:
    folds = np.random.default_rng(0).random(small.nnz) < 0.2
    train, test = small.subset(~folds), small.subset(folds)
    model = NeuralRecommender(**FAST)
    model.fit(train, seed=0, progress=lambda fraction: None)
    predicted = model.predict_rating(test.user_idx, test.movie_idx)
    assert predicted.min() >= 1.0 and predicted.max() <= 5.0
    ours = np.sqrt(np.mean((predicted - test.rating) ** 2))
    baseline = np.sqrt(np.mean((train.rating.mean() - test.rating) ** 2))
    assert ours < baseline - 0.05, (ours, baseline)

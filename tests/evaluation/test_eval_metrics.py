from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.evaluation.metrics import (
    coverage,
    evaluate_lists,
    hit_rate_at_k,
    mae,
    ndcg_at_k,
    recall_at_k,
    rmse,
    top_k,
)


def test_ndcg_by_hand() -> None:
    # hit at rank 2 only; ideal list has both relevant movies at ranks 1 and 2
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(np.array([3, 1, 2]), {1, 5}, 3) == pytest.approx(expected)
    assert ndcg_at_k(np.array([1, 5, 2]), {1, 5}, 3) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([7, 8]), {1}, 2) == 0.0


def test_ndcg_ideal_is_capped_at_k() -> None:
    # 3 relevant, k=2, both slots hit: perfect
    assert ndcg_at_k(np.array([1, 2]), {1, 2, 3}, 2) == pytest.approx(1.0)


def test_recall_and_hit_rate_by_hand() -> None:
    assert recall_at_k(np.array([3, 1, 2]), {1, 5}, 3) == pytest.approx(0.5)
    assert recall_at_k(np.array([1, 2]), {1, 2, 3}, 2) == pytest.approx(1.0)  # denominator min(|rel|, k)
    assert hit_rate_at_k(np.array([3, 1, 2]), {1, 5}, 3) == 1.0
    assert hit_rate_at_k(np.array([3, 1, 2]), {5}, 3) == 0.0


def test_coverage_and_average() -> None:
    lists = np.array([[0, 1], [1, 2]])
    assert coverage(lists, 4) == pytest.approx(0.75)
    result = evaluate_lists(lists, [{0}, {3}], n_movies=4, k=2)
    assert result.ndcg == pytest.approx(0.5) and result.hit_rate == pytest.approx(0.5) and result.users == 2


def test_top_k_masks_seen_and_orders() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.0, 0.2, 0.3, 0.1]], dtype=np.float32)
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0]]))
    assert top_k(scores, seen, 2).tolist() == [[1, 3], [1, 3]]


def test_rating_errors_by_hand() -> None:
    assert rmse(np.array([3.0, 5.0]), np.array([4.0, 4.0])) == pytest.approx(1.0)
    assert mae(np.array([3.0, 4.5]), np.array([4.0, 4.0])) == pytest.approx(0.75)

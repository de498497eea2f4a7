"""The A/B statistics: calibrated when users differ, textbook answers in textbook cases, and the report files."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pytest

from movierec.experiments import report
from movierec.experiments.abtest import arm, compare, needed_answers

VARIANTS = [("A", "run-a", "model-a", 0.5), ("B", "run-b", "model-b", 0.5)]


def answers_table(rng, *, users: int, rate_a: float, rate_b: float, heterogeneity: float = 2.0,
                  per_user: float = 4.0, first_user: int = 0) -> pa.Table:
    """Answers of users whose own watch propensity varies (Beta), a few answers each, half in each variant."""
    ids, variants, converted = [], [], []
    for user in range(first_user, first_user + users):
        variant = "A" if user % 2 == 0 else "B"
        mean = rate_a if variant == "A" else rate_b
        propensity = rng.beta(mean * heterogeneity, (1 - mean) * heterogeneity)
        count = 1 + rng.poisson(per_user)
        ids += [user] * count
        variants += [variant] * count
        converted += (rng.random(count) < propensity).tolist()
    n = len(ids)
    return pa.table({"user_id": ids, "variant": variants, "mature": [True] * n, "converted": converted})


def _naive_p(table: pa.Table) -> float:
    """The wrong test: every answer independent."""
    v, y = table["variant"].to_numpy(zero_copy_only=False), table["converted"].to_numpy(zero_copy_only=False)
    a, b = y[v == "A"], y[v == "B"]
    se = math.sqrt(a.mean() * (1 - a.mean()) / len(a) + b.mean() * (1 - b.mean()) / len(b))
    return 2 * (1 - NormalDist().cdf(abs(b.mean() - a.mean()) / se))


def test_clustered_test_holds_its_false_positive_rate_where_the_naive_one_does_not():
    rng = np.random.default_rng(1)
    clustered, naive = [], []
    for _ in range(300):  # A/A: both variants have the same true rate
        table = answers_table(rng, users=400, rate_a=0.2, rate_b=0.2, heterogeneity=2.0)
        result = compare(table, variants=VARIANTS, resamples=20)
        clustered.append(result.p_value < 0.05)
        naive.append(_naive_p(table) < 0.05)
    assert 0.02 <= np.mean(clustered) <= 0.09, np.mean(clustered)
    assert np.mean(naive) >= np.mean(clustered) + 0.06, (np.mean(naive), np.mean(clustered))


def test_one_answer_per_user_is_the_textbook_two_proportion_interval():
    n = np.ones(1000, np.int64)
    y = np.r_[np.ones(300), np.zeros(700)]
    a = arm("A", "r", "m", n, y)
    assert a.rate == 0.3
    assert a.std_error == pytest.approx(math.sqrt(0.3 * 0.7 / 1000 * 1000 / 999))
    assert a.design_effect == pytest.approx(1000 / 999)


def test_sample_size_matches_the_standard_formula():
    # p = 10%, +2 points, alpha 0.05 two-sided, power 80%: (1.96 + 0.8416)^2 * (0.09 + 0.1056) / 0.02^2
    assert needed_answers(0.10, 0.02, confidence=0.95, power=0.8, design_effect=1.0) == 3839
    assert needed_answers(0.10, 0.02, confidence=0.95, power=0.8, design_effect=2.0) == 2 * 3839 - 1


def test_a_real_difference_is_detected_and_written_up(tmp_path):
    rng = np.random.default_rng(2)
    table = answers_table(rng, users=1200, rate_a=0.15, rate_b=0.25)
    result = compare(table, variants=VARIANTS, minimum_effect=0.02)
    assert result.significant and result.p_value < 1e-4
    assert result.interval[0] > 0.03 and result.bootstrap_interval[0] > 0.03
    assert abs(result.interval[1] - result.bootstrap_interval[1]) < 0.02  # the two intervals agree
    assert result.treatment.design_effect > 1.2  # heterogeneous users: answers are not independent
    assert result.verdict.startswith("B (model-b) watch-through")
    assert "B is better, at 95% confidence." in result.verdict and "WARNING" not in result.verdict
    daily = [{"run_id": f"run-{v.lower()}", "variant": v, "day": d, "watch_through": r}
             for v, r in (("A", 0.15), ("B", 0.25)) for d in ("2026-11-01", "2026-11-02")]
    files = report.write(result, daily, tmp_path / "out")
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files["png"].stat().st_size > 20_000
    page = files["html"].read_text()
    assert result.verdict.split(":")[0] in page and "data:image/png;base64," in page
    assert json.loads(files["json"].read_text())["significant"] is True


def test_no_difference_says_so_with_the_traffic_it_would_need():
    rng = np.random.default_rng(3)
    table = answers_table(rng, users=300, rate_a=0.2, rate_b=0.2)
    result = compare(table, variants=VARIANTS, minimum_effect=0.02)
    assert not result.significant
    assert "No significant difference at 95% confidence" in result.verdict
    assert f"{result.needed_answers_per_arm:,} mature answers" in result.verdict
    assert result.needed_answers_per_arm > result.control.answers


def test_a_sample_ratio_mismatch_is_flagged():
    rng = np.random.default_rng(4)
    table = answers_table(rng, users=600, rate_a=0.2, rate_b=0.2)
    keep = [u % 2 == 0 or u % 6 == 1 for u in table["user_id"].to_pylist()]  # two thirds of B's users lost
    result = compare(table.filter(pa.array(keep)), variants=VARIANTS)
    assert result.sample_ratio_p < 0.001 and "do not trust this result" in result.verdict

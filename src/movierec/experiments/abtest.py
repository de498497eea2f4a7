"""A/B reports: do the variants of a publication differ in watch-through, and by how much?

Users, not answers, are the unit of randomisation (a stable hash puts each user in one
variant), and one user's answers are correlated. So every variance here is clustered
by user: the delta-method variance of a ratio of per-user sums for the z-test and the
confidence interval, and a bootstrap that resamples users as a cross-check. Treating
answers as independent would make the test overconfident (tests/test_abtest.py shows it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np
import pyarrow as pa

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Arm:
    """One variant's outcome: answers and watched answers, summed per user."""

    name: str
    run_id: str
    model_version: str
    users: int
    answers: int
    watched: int
    rate: float
    std_error: float  # clustered by user
    design_effect: float  # clustered variance / the variance if answers were independent


@dataclass(frozen=True)
class Comparison:
    control: Arm
    treatment: Arm
    confidence: float
    difference: float  # treatment rate - control rate
    interval: tuple[float, float]  # delta method, clustered
    bootstrap_interval: tuple[float, float]  # users resampled
    z: float
    p_value: float
    significant: bool
    minimum_effect: float
    power: float
    needed_answers_per_arm: int
    needed_users_per_arm: int
    sample_ratio_p: float  # chi-square test of users per arm against the published shares
    verdict: str
    bootstrap: list[float] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("bootstrap")
        return out


def per_user(answers: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """variant -> (answers per user, watched answers per user), over mature answers only."""
    mature = answers.filter(answers["mature"])
    variants = mature["variant"].to_numpy(zero_copy_only=False)
    users = mature["user_id"].to_numpy()
    watched = mature["converted"].to_numpy(zero_copy_only=False).astype(np.int64)
    out = {}
    for name in sorted(set(variants)):
        mine = variants == name
        ids, inverse = np.unique(users[mine], return_inverse=True)
        out[name] = (np.bincount(inverse, minlength=len(ids)), np.bincount(inverse, weights=watched[mine], minlength=len(ids)))
    return out


def arm(name: str, run_id: str, model_version: str, n: np.ndarray, y: np.ndarray) -> Arm:
    total, hits = int(n.sum()), int(y.sum())
    rate = hits / total if total else float("nan")
    users = len(n)
    # Delta method for a ratio of per-user sums (the usual cluster-robust variance).
    residual = y - rate * n
    variance = (residual @ residual) / total**2 * users / max(users - 1, 1) if total else float("nan")
    independent = rate * (1 - rate) / total if total else float("nan")
    effect = variance / independent if independent > 0 else 1.0
    return Arm(name, run_id, model_version, users, total, hits, rate, math.sqrt(variance), effect)


def bootstrap_differences(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], *,
                          resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Treatment minus control rate, with each arm's users resampled with replacement."""
    rng = np.random.default_rng(seed)

    def rates(n: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty(resamples)
        step = max(1, 5_000_000 // max(len(n), 1))  # bounded memory at a million users
        for start in range(0, resamples, step):
            picks = rng.integers(0, len(n), size=(min(step, resamples - start), len(n)))
            out[start : start + len(picks)] = y[picks].sum(axis=1) / np.maximum(n[picks].sum(axis=1), 1)
        return out

    return rates(*b) - rates(*a)


def needed_answers(p: float, effect: float, *, confidence: float, power: float, design_effect: float) -> int:
    """Answers per arm for a two-sided test to detect `effect` (absolute) at `power`."""
    q = min(max(p + effect, 1e-9), 1 - 1e-9)
    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2) + _NORMAL.inv_cdf(power)
    return math.ceil(z**2 * (p * (1 - p) + q * (1 - q)) / effect**2 * max(design_effect, 1.0))


def compare(answers: pa.Table, *, variants: list[tuple[str, str, str, float]], confidence: float = 0.95,
            minimum_effect: float = 0.02, power: float = 0.8, resamples: int = 2000, seed: int = 0) -> Comparison:
    """Compare two variants (name, run_id, model_version, share), the first being the control."""
    if len(variants) != 2:
        raise ValueError("an A/B comparison needs exactly two variants")
    data = per_user(answers)
    empty = (np.zeros(0, np.int64), np.zeros(0))
    groups = [data.get(v[0], empty) for v in variants]
    arms = [arm(v[0], v[1], v[2], *g) for v, g in zip(variants, groups)]
    control, treatment = arms
    if min(control.answers, treatment.answers) == 0:
        raise ValueError("a variant has no mature answers yet: nothing to compare")
    difference = treatment.rate - control.rate
    se = math.hypot(control.std_error, treatment.std_error)
    z_crit = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    z = difference / se if se > 0 else (math.inf if difference else 0.0)
    p_value = 2 * (1 - _NORMAL.cdf(abs(z))) if math.isfinite(z) else 0.0
    boot = bootstrap_differences(*groups, resamples=resamples, seed=seed)
    tail = (1 - confidence) / 2 * 100
    needed = needed_answers(control.rate, minimum_effect, confidence=confidence, power=power,
                            design_effect=(control.design_effect + treatment.design_effect) / 2)
    per_user_answers = (control.answers + treatment.answers) / (control.users + treatment.users)
    result = {
        "control": control, "treatment": treatment, "confidence": confidence, "difference": difference,
        "interval": (difference - z_crit * se, difference + z_crit * se),
        "bootstrap_interval": (float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail))),
        "z": z, "p_value": p_value, "significant": p_value < 1 - confidence, "minimum_effect": minimum_effect, "power": power,
        "needed_answers_per_arm": needed, "needed_users_per_arm": math.ceil(needed / per_user_answers),
        "sample_ratio_p": sample_ratio_p([control.users, treatment.users], [v[3] for v in variants]),
        "bootstrap": boot.tolist(),
    }
    return Comparison(verdict=verdict(result), **result)


def sample_ratio_p(users: list[int], shares: list[float]) -> float:
    """Chi-square (1 dof) p-value of the users per arm against the published shares."""
    total = sum(users)
    expected = [total * s / sum(shares) for s in shares]
    chi2 = sum((u - e) ** 2 / e for u, e in zip(users, expected) if e > 0)
    return 2 * (1 - _NORMAL.cdf(math.sqrt(chi2)))  # chi-square with 1 dof is a squared normal


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def verdict(r: dict) -> str:
    """The result in words, for the report's first line."""
    a, b, level = r["control"], r["treatment"], f"{r['confidence']:.0%}"
    low, high = r["interval"]
    words = (f"{b.name} ({b.model_version}) watch-through {b.rate:.1%} vs {a.name} ({a.model_version}) {a.rate:.1%}: "
             f"difference {r['difference'] * 100:+.1f} points, {level} CI [{low * 100:+.1f}, {high * 100:+.1f}], "
             f"{_p(r['p_value'])}. ")
    if r["significant"]:
        better = b if r["difference"] > 0 else a
        words += f"{better.name} is better, at {level} confidence."
    else:
        words += (f"No significant difference at {level} confidence. Detecting a {r['minimum_effect'] * 100:.1f}-point "
                  f"difference with {r['power']:.0%} power needs about {r['needed_answers_per_arm']:,} mature answers "
                  f"per variant (now {min(a.answers, b.answers):,}).")
    if r["sample_ratio_p"] < 0.001:
        words += (f" WARNING: users per variant ({a.users:,} / {b.users:,}) do not match the published shares "
                  f"(p = {r['sample_ratio_p']:.1g}): assignment or logging is broken; do not trust this result.")
    return words

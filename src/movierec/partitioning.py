"""Stable hashes of user ids, shared by every process: partitions and A/B buckets.

splitmix64 is a well-mixed, salt-free 64-bit hash that numpy computes for a
million ids at once; Python's `hash()` is salted per process and never used.
"""

from __future__ import annotations

import numpy as np

AB_SALT = 0x5EED_AB7E_57AB_1E00
_MASK = (1 << 64) - 1


def splitmix64(values: np.ndarray | int) -> np.ndarray:
    x = np.asarray(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _splitmix64_int(x: int) -> int:
    """splitmix64 of one id in plain integers: recommend's request path hashes one id at a time,
    where numpy's scalar arithmetic costs several times as much per call."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def partition_of(user_id: int, n_partitions: int) -> int:
    """The partition (0..n-1) that holds `user_id`'s recommendations."""
    return _splitmix64_int(user_id) % n_partitions


def partitions_of(user_ids: np.ndarray, n_partitions: int) -> np.ndarray:
    return (splitmix64(user_ids) % np.uint64(n_partitions)).astype(np.int64)


def ab_bucket(user_id: int) -> float:
    """A uniform number in [0, 1) per user, independent of the partition hash."""
    return _splitmix64_int(user_id ^ AB_SALT) / 2.0**64


def ab_buckets(user_ids: np.ndarray) -> np.ndarray:
    """`ab_bucket` for many users at once."""
    hashed = splitmix64(np.asarray(user_ids, dtype=np.int64).astype(np.uint64) ^ np.uint64(AB_SALT))
    return hashed.astype(np.float64) / 2.0**64

"""Data-quality reports: each snapshot's profile, compared with the previous snapshot's.

A profile is small (counts, ranges, histograms) and lives in the manifest, so
comparing two snapshots never reloads the older one's data.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.stream import FUTURE_TOLERANCE

MINUTE_BINS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 10**9]  # watch minutes per (user, movie)
RATING_VALUES = list(range(1, 11))
PSI_WARN = 0.2  # population stability index: above 0.2 is the usual "significant shift"
VOLUME_WARN = 0.5  # a count that fell by more than half


def profile(table: pa.Table, counts: dict[str, int]) -> dict:
    ratings = table["rating"].drop_null().to_numpy()
    minutes = table["watch_minutes"].to_numpy()
    watched = minutes[minutes > 0]
    return {
        "schema": {f.name: str(f.type) for f in table.schema},
        "counts": counts,
        "rating_histogram": [int((ratings == v).sum()) for v in RATING_VALUES],
        "watch_minutes_histogram": np.histogram(watched, bins=MINUTE_BINS)[0].tolist(),
        "time_range": _time_range(table),
        "ranges": {
            "rating": _range(ratings),
            "watch_minutes": _range(watched),
            "interactions_per_user": _range(np.unique(table["user_id"].to_numpy(), return_counts=True)[1]),
        },
    }


def _range(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"min": None, "max": None, "median": None}
    return {"min": float(values.min()), "max": float(values.max()), "median": float(np.median(values))}


def _time_range(table: pa.Table) -> dict:
    if table.num_rows == 0:
        return {"min": None, "max": None}
    bounds = pc.min_max(table["last_time"])
    return {k: bounds[k].as_py().isoformat() for k in ("min", "max")}


def time_warnings(current: dict, now: datetime | None = None) -> list[str]:
    """Interactions dated after the snapshot's own time (beyond the stream's tolerance): one such
    line skews every recency weight, so it is reported whether or not there is a snapshot before."""
    newest = (current.get("time_range") or {}).get("max")
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    if newest and datetime.fromisoformat(newest) > now + FUTURE_TOLERANCE:
        return [(f"interactions dated up to {newest}, after this snapshot's time {now.isoformat()}"
                 " (a producer clock or a forged line; see the quarantine reason future_time)")]
    return []


def psi(expected: list[int], actual: list[int]) -> float | None:
    """Population stability index between two histograms (0 = same shape)."""
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    if e.sum() == 0 or a.sum() == 0:
        return None
    e, a = np.clip(e / e.sum(), 1e-4, None), np.clip(a / a.sum(), 1e-4, None)
    return float(((a - e) * np.log(a / e)).sum())


def compare(current: dict, previous: dict | None, previous_id: str | None, *, at: datetime | None = None) -> dict:
    """The report stored beside a snapshot made `at` (default: now): what changed since the previous
    one, and warnings."""
    if previous is None:
        return {"previous": None, "warnings": time_warnings(current, at),
                "note": "first snapshot: nothing to compare with"}
    warnings = time_warnings(current, at)
    schema_changed = current["schema"] != previous["schema"]
    if schema_changed:
        warnings.append(f"schema changed: {previous['schema']} -> {current['schema']}")
    volume = {}
    for name, now in current["counts"].items():
        before = previous["counts"].get(name)
        change = None if not before else (now - before) / before
        volume[name] = {"previous": before, "current": now, "change": change}
        if change is not None and change < -VOLUME_WARN:
            warnings.append(f"{name} fell by {-change:.0%} ({before:,} -> {now:,})")
    drift = {
        "rating_psi": psi(previous["rating_histogram"], current["rating_histogram"]),
        "watch_minutes_psi": psi(previous["watch_minutes_histogram"], current["watch_minutes_histogram"]),
    }
    for name, value in drift.items():
        if value is not None and value > PSI_WARN:
            warnings.append(f"{name} = {value:.2f} > {PSI_WARN}: the distribution shifted")
    for name, now in current["ranges"].items():
        before = previous["ranges"].get(name, {})
        if before.get("max") and now.get("max") and now["max"] > 10 * before["max"]:
            warnings.append(f"{name} max jumped from {before['max']} to {now['max']}")
    return {
        "previous": previous_id,
        "schema_changed": schema_changed,
        "volume": volume,
        "ranges": {"previous": previous["ranges"], "current": current["ranges"]},
        "time_range": current.get("time_range"),
        "drift": drift,
        "warnings": warnings,
    }


def summary_lines(report: dict) -> list[str]:
    if report["previous"] is None:
        return [report["note"]] + [f"  WARNING {w}" for w in report["warnings"]]
    lines = [f"compared with snapshot {report['previous']}"]
    for name, v in report["volume"].items():
        change = "" if v["change"] is None else f" ({v['change']:+.1%})"
        lines.append(f"  {name}: {v['previous']} -> {v['current']}{change}")
    lines += [f"  {k}: {'n/a' if v is None else f'{v:.3f}'}" for k, v in report["drift"].items()]
    lines += [f"  WARNING {w}" for w in report["warnings"]] or ["  no warnings"]
    return lines

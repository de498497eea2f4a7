"""Wall time and peak memory of each step of a long job, for its log and for the benchmarks.

Linux keeps a process's peak resident set (VmHWM) and lets the process reset it
(`/proc/self/clear_refs`, value 5), so each step reports its own peak, not the job's so far.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def peak_rss_mb() -> float:
    """This process's peak resident memory since start or since the last `reset_peak`."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start a new peak from the current resident size; False where the system cannot."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def measured(steps: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Record the step's wall seconds and peak RSS (MB) in `steps[name]`, also when it fails."""
    own_peak = reset_peak()
    start = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}
        if not own_peak:
            steps[name]["peak_is_since_start"] = True

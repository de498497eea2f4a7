"""What every benchmark writes: a line about the machine, and its results under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {model}, {memory:.0f} GiB"


def write_results(name: str, text: str, data: dict | None = None) -> Path:
    """`<name>-<today>.md` (and `.json` with `data`); returns the Markdown file's path."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{name}-{date.today()}"
    stem.with_suffix(".md").write_text(text)
    if data is not None:
        stem.with_suffix(".json").write_text(json.dumps({"date": str(date.today()), **data}, indent=2))
    return stem.with_suffix(".md")

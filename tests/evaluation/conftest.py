from __future__ import annotations

from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    path = DATASETS / "ml-100k"
    if not (path / "u.data").exists():
        pytest.skip(f"MovieLens 100k not found at {path} (internal test data in ../shared/datasets)")
    return path

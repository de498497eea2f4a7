"""Fixtures for the offline deploy checks; the helpers live in deploytools.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploytools import OVERLAYS, REPO, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every overlay rendered once per session: overlay name -> YAML file."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(render(REPO / "knative" / "overlays" / overlay), encoding="utf-8")
    return files

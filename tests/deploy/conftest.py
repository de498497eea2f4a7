"""Fixtures for the offline deploy checks; the helpers live in deploytools.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploytools import OVERLAYS, REPO, render, render_aws


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every overlay rendered once per session, as deployed: overlay name -> YAML file. The
    aws overlay renders only through scripts/render-aws.sh, with a host's settings."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        files[overlay] = out / f"{overlay}.yaml"
        if overlay == "aws":
            result = render_aws(tmp_path_factory.mktemp("repo"))
            assert result.returncode == 0, result.stderr
            text = result.stdout
        else:
            text = render(REPO / "knative" / "overlays" / overlay)
        files[overlay].write_text(text, encoding="utf-8")
    return files

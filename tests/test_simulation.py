"""`movierec simulate`: an A/B test end to end against real functions; the report must find the better model."""

from __future__ import annotations

import time

import pytest

from pipelines.simulate import simulate

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


@pytest.mark.timeout(180)
def test_simulate_detects_the_better_model(tmp_path):
    started = time.monotonic()
    result = simulate(str(tmp_path / "store"), users=600, days=2, sessions=3, good="popularity", weak="random",
                      seed=0, out=tmp_path / "report", log=lambda *_: None)
    seconds = time.monotonic() - started
    c = result.comparison
    assert seconds < 120, f"simulate took {seconds:.0f} s"
    assert result.agreement == 1.0  # every answer credited to the variant recommend named in X-Variant
    assert (c.control.name, c.treatment.name, result.good_variant) == ("A", "B", "B")
    assert "popularity" in c.treatment.model_version and "random" in c.control.model_version
    assert c.control.answers + c.treatment.answers == result.answers == 1800  # every answer mature
    assert c.significant and c.confidence == 0.95 and c.interval[0] > 0 and c.bootstrap_interval[0] > 0
    assert "B is better, at 95% confidence." in c.verdict
    assert c.sample_ratio_p > 0.001
    assert result.files["png"].stat().st_size > 20_000 and c.verdict[:40] in result.files["html"].read_text()
    stored = list((tmp_path / "store" / "recs").glob("*/online/*.json"))
    assert {p.parts[-3] for p in stored} == {c.control.run_id, c.treatment.run_id}


def test_simulate_command_exits_zero_only_when_the_good_model_wins(tmp_path):
    """The same loop through the command line, with the models swapped: the weak one cannot win."""
    from pipelines.cli import main

    code = main(["simulate", "--users", "200", "--sessions", "2", "--days", "1", "--good", "random",
                 "--weak", "popularity", "--store-dir", str(tmp_path / "store"), "--out", str(tmp_path / "report")])
    assert code == 1
    assert (tmp_path / "report" / "abtest.html").exists()

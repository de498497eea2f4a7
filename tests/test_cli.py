"""The command line's own checks: options in either place, local ports, refused arguments."""

from __future__ import annotations

import pytest

from pipelines.cli import build_parser, local_port, main


@pytest.mark.parametrize("argv", [
    ["snapshot", "list"], ["models"], ["abtest", "report"], ["precompute", "--local"], ["rollback"],
])
def test_store_and_verbose_are_accepted_after_the_command_too(argv, tmp_path):
    before = build_parser().parse_args(["--store", str(tmp_path), "-v", *argv])
    after = build_parser().parse_args([*argv, "--store", str(tmp_path), "-v"])
    assert before.store == after.store == str(tmp_path) and before.verbose and after.verbose
    default = build_parser().parse_args(argv)
    assert default.store != str(tmp_path) and default.verbose is False


def test_local_ports_follow_the_spec_unless_port_is_set(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    assert [local_port(f) for f in ("ingest", "precompute", "recommend")] == [8080, 8081, 8082]
    monkeypatch.setenv("PORT", "9999")
    assert local_port("recommend") == 9999


@pytest.mark.parametrize("argv", [
    ["precompute", "--local", "--partitions", "-2"],
    ["precompute", "--local", "--partitions", "0"],
    ["precompute", "--workers", "0"],
    ["replay", "--batch-size", "0"],
    ["replay", "--rate", "nan"],
    ["publish", "run-a", "--shares", "abc"],
    ["serve", "recommend", "--port", "0"],
    ["serve", "recommend", "--port", "70000"],
    ["deadletters", "--since", "yesterday"],
])
def test_bad_numbers_are_refused_before_anything_runs(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--store", str(tmp_path / "store"), *argv])
    assert exit_.value.code == 2 and "error: argument" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_precompute_without_a_sink_writes_no_run(tmp_path, monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    assert main(["--store", str(tmp_path), "precompute", "--model", "m"]) == 2
    assert not (tmp_path / "recs").exists()

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from movierec.evaluation.command import register
from movierec.evaluation.report import print_tables, write_results


def _results() -> dict:
    ranking = [
        {"model": m, "params": {}, "validation_ndcg": v, "tried": 1, "fit_seconds": 1.0, "ndcg": v, "recall": v,
         "hit_rate": 0.5, "coverage": 0.1, "users": 10}
        for m, v in (("popularity", 0.1), ("movierec forecast-dae", 0.3))
    ]
    rating = [{"model": "Surprise SVD", "rmse": 0.93, "mae": 0.73, "fit_seconds": 1.0, "folds": 5}]
    return {"date": "2026-11-29", "machine": {}, "datasets": {"toy": {"ranking": ranking, "rating": rating, "goals": {}}}}


def test_write_results_json_and_png(tmp_path: Path) -> None:
    json_path, png_path = write_results(_results(), tmp_path)
    assert json.loads(json_path.read_text())["datasets"]["toy"]["ranking"][1]["ndcg"] == 0.3
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_lists_every_model() -> None:
    console = Console(record=True, width=200)
    print_tables(_results(), console)
    out = console.export_text()
    assert "movierec forecast-dae" in out and "popularity" in out and "0.9300" in out


def test_register_adds_evaluate() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--movielens", "a", "--movielens", "b", "--quick", "--out", "o"])
    assert args.movielens == [Path("a"), Path("b")] and args.quick and args.seed == 0 and callable(args.func)

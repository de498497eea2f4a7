"""`movierec evaluate`: the model against tuned peers on MovieLens (or a snapshot), side by side."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from movierec.errors import MovierecError
from movierec.evaluation.data import dataset_name, load_movielens
from movierec.evaluation.report import machine, print_tables, today, write_results
from movierec.evaluation.runner import evaluate_dataset
from movierec.models.base import Interactions

_log = logging.getLogger(__name__)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `evaluate` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "evaluate", help="compare the model with tuned peers (NDCG/Recall/HR@20, coverage, RMSE/MAE)",
        description="Per-user temporal split (last 20 percent held out, validation carved the same way), "
                    "every peer tuned on validation, 5-fold RMSE/MAE; prints a table and writes JSON + PNG.",
    )
    parser.add_argument("--movielens", type=Path, action="append", default=[],
                        help="ml-100k dir (u.data) or ml-latest-small dir (ratings.csv); repeatable")
    parser.add_argument("--snapshot", metavar="ID", action="append", default=[],
                        help="a snapshot in the store (--store) to evaluate on; repeatable")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="where results JSON and chart go")
    parser.add_argument("--quick", action="store_true", help="small grids, fewer epochs and folds (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    sources: list[tuple[str, Interactions]] = [(dataset_name(p), load_movielens(p)) for p in args.movielens]
    if args.snapshot:
        from movierec.snapshots import load_snapshot
        from movierec.store import open_store

        store = open_store(args.store)
        sources += [(f"snapshot {s}", load_snapshot(store, s).interactions()) for s in args.snapshot]
    if not sources:
        raise MovierecError("evaluate needs --movielens PATH and/or --snapshot ID")
    results = evaluate_all(sources, quick=args.quick, seed=args.seed)
    print_tables(results)
    json_path, png_path = write_results(results, args.out)
    print(f"wrote {json_path} and {png_path}")
    return 0


def evaluate_all(sources: list[tuple[str, Interactions]], *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    results: dict[str, Any] = {"date": today(), "machine": machine(), "seed": seed, "quick": quick, "datasets": {}}
    for name, data in sources:
        print(f"{name}: {data.n_users} users, {data.n_movies} movies, {data.nnz} interactions")
        results["datasets"][name] = evaluate_dataset(data, quick=quick, seed=seed)
    results["machine"]["load_average_1m_end"] = machine()["load_average_1m"]
    return results

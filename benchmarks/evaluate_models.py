"""Run `movierec evaluate` on ml-100k and ml-latest-small: one command, one table, results on disk.

    .venv/bin/python benchmarks/evaluate_models.py [--quick] [--seed 0]

Reads ../shared/datasets (never copied into the repo); writes
benchmarks/results/evaluate-<date>-<host>.json and .png (machine and date inside).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's own threads do the work

from movierec.evaluation.command import evaluate_all
from movierec.evaluation.data import load_movielens
from movierec.evaluation.report import print_tables, today, write_results

DATASETS = REPO.parent / "shared" / "datasets"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    args = parser.parse_args()
    missing = [name for name in args.datasets if not (DATASETS / name).is_dir()]
    if missing:
        raise SystemExit(f"datasets not found under {DATASETS}: {missing}")
    sources = [(name, load_movielens(DATASETS / name)) for name in args.datasets]
    results = evaluate_all(sources, quick=args.quick, seed=args.seed)
    print_tables(results)
    stem = f"evaluate-{today()}-{platform.node() or 'host'}" + ("-quick" if args.quick else "")
    json_path, png_path = write_results(results, REPO / "benchmarks" / "results", stem=stem)
    print(f"wrote {json_path.relative_to(REPO)} and {png_path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

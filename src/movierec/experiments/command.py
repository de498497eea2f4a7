"""The experiment commands: `movierec online-eval` and `movierec abtest report` (`simulate` runs the
pipelines, so it lives in pipelines/cli.py)."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

from movierec.errors import MovierecError
from movierec.experiments.online import BUDGET_MS, WINDOW


def _store(args):
    from movierec.store import open_store

    return open_store(args.store)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def cmd_online_eval(args) -> int:
    from movierec.experiments.online import evaluate

    result = evaluate(_store(args), window=timedelta(hours=args.window_hours), budget_ms=args.budget_ms,
                      save=not args.no_save)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['answers']:,} answers; watch-through within {args.window_hours:g} h; budget {args.budget_ms} ms")
    print(f"{'run':<24} {'variant':<8} {'day':<10} {'answers':>8} {'errors':>7} {'>budget':>8} "
          f"{'personal':>8} {'mature':>7} {'watch-through':>13}")
    for r in result["rows"]:
        print(f"{r['run_id'][:24]:<24} {r['variant']:<8} {r['day']:<10} {r['answers']:>8,} {_pct(r['error_share']):>7} "
              f"{_pct(r['over_budget_share']):>8} {_pct(r['personalized_share']):>8} {r['mature_answers']:>7,} "
              f"{_pct(r['watch_through']):>13}")
    return 0


def cmd_abtest_report(args) -> int:
    from movierec.experiments import report
    from movierec.experiments.abtest import compare
    from movierec.experiments.online import served_answers, summarize
    from movierec.recs import current_variants, read_current

    store = _store(args)
    current = read_current(store)
    pointer = current if args.publication == "current" else current.get("previous")
    if not pointer or len(pointer["variants"]) != 2:
        raise MovierecError(f"the {args.publication} publication is not an A/B split of two runs")
    answers = served_answers(store, window=timedelta(hours=args.window_hours))
    answers = answers.filter(answers["publication"].to_numpy(zero_copy_only=False) == args.publication)
    variants = [(v.name, v.run_id, v.model_version, v.share) for v in current_variants(pointer)]
    try:
        comparison = compare(answers, variants=variants, confidence=args.confidence,
                             minimum_effect=args.minimum_effect, power=args.power)
    except ValueError as exc:
        raise MovierecError(str(exc)) from None
    files = report.write(comparison, summarize(answers), Path(args.out))
    print(comparison.verdict)
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def _evaluation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-hours", type=float, default=WINDOW.total_seconds() / 3600,
                   help="a recommended movie counts as watched if first started within this many hours (default %(default)g)")


def register(sub) -> None:
    p = sub.add_parser("online-eval", help="watch-through, over-budget and personalized shares per run, variant and day")
    _evaluation_options(p)
    p.add_argument("--budget-ms", type=int, default=BUDGET_MS, help="latency budget (default %(default)s)")
    p.add_argument("--no-save", action="store_true", help="print only; do not store recs/<run>/online/<time>.json")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_online_eval)

    p = sub.add_parser("abtest", help="A/B experiments: `abtest report` compares the variants of a publication")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("report", help="test, confidence interval, sample size, verdict; PNG and HTML")
    _evaluation_options(r)
    r.add_argument("--publication", choices=("current", "previous"), default="current",
                   help="which A/B split: recs/CURRENT or the one it replaced (default %(default)s)")
    r.add_argument("--confidence", type=float, default=0.95, help="confidence level (default %(default)s)")
    r.add_argument("--minimum-effect", type=float, default=0.02,
                   help="smallest difference in watch-through worth detecting, absolute (default %(default)s)")
    r.add_argument("--power", type=float, default=0.8, help="power for the sample size (default %(default)s)")
    r.add_argument("--out", default="abtest-report", help="directory for abtest.png/.html/.json (default %(default)s)")
    r.set_defaults(func=cmd_abtest_report)

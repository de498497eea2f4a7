"""Print the comparison table; write results JSON (with machine and date) and a PNG chart."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def print_tables(results: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        console.width = max(console.width, 180)  # the params column needs room, even in a log file
    for name, run in results["datasets"].items():
        table = Table(title=f"{name}: ranking, K=20, per-user temporal split (test)")
        for column in ("model", "NDCG@20", "Recall@20", "HR@20", "coverage", "val NDCG", "fit s", "params"):
            table.add_column(column, justify="left" if column in ("model", "params") else "right")
        for row in sorted(run["ranking"], key=lambda r: -r["ndcg"]):
            table.add_row(row["model"], f"{row['ndcg']:.4f}", f"{row['recall']:.4f}", f"{row['hit_rate']:.4f}",
                          f"{row['coverage']:.3f}", f"{row['validation_ndcg']:.4f}", f"{row['fit_seconds']:.1f}",
                          json.dumps(row["params"]))
        console.print(table)
        if run["rating"]:
            ratings = Table(title=f"{name}: explicit ratings, {run['rating'][0]['folds']}-fold random split")
            for column in ("model", "RMSE", "MAE", "fit s / fold"):
                ratings.add_column(column, justify="left" if column == "model" else "right")
            for row in sorted(run["rating"], key=lambda r: r["rmse"]):
                ratings.add_row(row["model"], f"{row['rmse']:.4f}", f"{row['mae']:.4f}", f"{row['fit_seconds']:.1f}")
            console.print(ratings)
        console.print(f"goals: {json.dumps(run['goals'], default=str)}")


def write_results(results: dict[str, Any], out: Path, *, stem: str = "evaluation") -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.png` into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    plot(results, png_path)
    return json_path, png_path


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["datasets"]
    fig, axes = plt.subplots(1, len(runs) * 2, figsize=(7 * len(runs) * 2, 5), squeeze=False)
    for col, (name, run) in enumerate(runs.items()):
        rows = sorted(run["ranking"], key=lambda r: r["ndcg"])
        ax = axes[0, 2 * col]
        ax.barh([r["model"] for r in rows], [r["ndcg"] for r in rows],
                color=["tab:red" if r["model"].startswith("movierec") else "tab:gray" for r in rows])
        ax.set_title(f"{name}: NDCG@20 (test)")
        ax = axes[0, 2 * col + 1]
        ratings = sorted(run["rating"], key=lambda r: -r["rmse"])
        ax.barh([r["model"] for r in ratings], [r["rmse"] for r in ratings],
                color=["tab:red" if r["model"].startswith("movierec") else "tab:gray" for r in ratings])
        if ratings:
            ax.set_xlim(min(r["rmse"] for r in ratings) - 0.03, max(r["rmse"] for r in ratings) + 0.01)
        ax.set_title(f"{name}: RMSE (lower is better)")
    fig.suptitle(f"movierec evaluate, {results['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def today() -> str:
    return dt.date.today().isoformat()

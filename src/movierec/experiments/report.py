"""The A/B report as files: a PNG chart, a one-page HTML (the chart embedded) and the numbers as JSON."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from statistics import NormalDist

from movierec.experiments.abtest import Comparison

COLORS = ("#4c72b0", "#dd8452")


def chart(comparison: Comparison, daily: list[dict], path: Path) -> Path:
    """Rates with their intervals, the daily rates, and the bootstrap distribution of the difference."""
    import matplotlib

    matplotlib.use("Agg")  # no display: servers and tests
    import matplotlib.pyplot as plt

    arms = [comparison.control, comparison.treatment]
    z = NormalDist().inv_cdf(1 - (1 - comparison.confidence) / 2)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2), dpi=100)
    left.bar([a.name for a in arms], [a.rate * 100 for a in arms], yerr=[z * a.std_error * 100 for a in arms],
             color=COLORS, capsize=8)
    for i, a in enumerate(arms):
        left.annotate(f"{a.rate:.1%}\n{a.users:,} users", (i, a.rate * 100), ha="center", va="bottom",
                      xytext=(0, 12), textcoords="offset points", fontsize=9)
    left.set_ylabel("watch-through (%)")
    left.set_title(f"Watch-through, {comparison.confidence:.0%} CI")
    left.margins(y=0.25)
    for color, a in zip(COLORS, arms):
        rows = sorted((r for r in daily if r["variant"] == a.name and r["run_id"] == a.run_id
                       and r["watch_through"] is not None), key=lambda r: r["day"])
        middle.plot([r["day"] for r in rows], [r["watch_through"] * 100 for r in rows], "o-", color=color, label=a.name)
    middle.set_title("Watch-through per day")
    middle.set_ylabel("%")
    middle.legend()
    middle.tick_params(axis="x", labelrotation=30)
    right.hist([d * 100 for d in comparison.bootstrap], bins=40, color="#8c8c8c")
    for bound in comparison.bootstrap_interval:
        right.axvline(bound * 100, color="black", linestyle="--")
    right.axvline(0, color="red")
    right.set_title(f"{comparison.treatment.name} - {comparison.control.name}, users resampled")
    right.set_xlabel("difference (points)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def html_page(comparison: Comparison, png: Path) -> str:
    c = comparison
    image = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(a.name)}</td><td>{html.escape(a.run_id)}</td><td>{html.escape(a.model_version)}</td>"
        f"<td>{a.users:,}</td><td>{a.answers:,}</td><td>{a.watched:,}</td><td>{a.rate:.2%}</td>"
        f"<td>{a.std_error:.2%}</td><td>{a.design_effect:.2f}</td></tr>"
        for a in (c.control, c.treatment)
    )
    level = f"{c.confidence:.0%}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A/B report: {html.escape(c.treatment.name)} vs {html.escape(c.control.name)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}.verdict{{font-size:1.15em;padding:.8em;background:#f3f3f3}}</style>
</head><body>
<h1>A/B report: watch-through</h1>
<p class="verdict" id="verdict">{html.escape(c.verdict)}</p>
<table><tr><th>variant</th><th>run</th><th>model</th><th>users</th><th>mature answers</th><th>watched</th>
<th>watch-through</th><th>std. error</th><th>design effect</th></tr>{rows}</table>
<ul>
<li>Difference {c.difference * 100:+.2f} points; {level} CI (clustered by user) [{c.interval[0] * 100:+.2f}, {c.interval[1] * 100:+.2f}];
bootstrap over users [{c.bootstrap_interval[0] * 100:+.2f}, {c.bootstrap_interval[1] * 100:+.2f}].</li>
<li>z = {c.z:.2f}, two-sided p = {c.p_value:.3g}; significant at {level}: {"yes" if c.significant else "no"}.</li>
<li>Sample size for a {c.minimum_effect * 100:.1f}-point difference at {c.power:.0%} power:
{c.needed_answers_per_arm:,} mature answers (about {c.needed_users_per_arm:,} users) per variant.</li>
<li>Sample ratio check (users per variant against the published shares): p = {c.sample_ratio_p:.3g}.</li>
</ul>
<img alt="watch-through per variant, per day, and the bootstrap distribution of the difference" src="data:image/png;base64,{image}" style="max-width:100%">
<h2>How to read this</h2>
<p>An answer is one list served by recommend; it is <em>watched</em> when the user starts one of its movies for the
first time within the watch-through window; answers whose window has not passed yet are left out. Users are assigned
to variants by a stable hash, so the test treats users as the unit: a user's answers are correlated, and the design
effect says how much that widens the interval compared with counting answers as independent. docs/operations.md,
"Experiments", explains the method and what to do with each verdict.</p>
</body></html>
"""


def write(comparison: Comparison, daily: list[dict], out: Path) -> dict[str, Path]:
    """abtest.png, abtest.html and abtest.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    png = chart(comparison, daily, out / "abtest.png")
    page = out / "abtest.html"
    page.write_text(html_page(comparison, png), encoding="utf-8")
    numbers = out / "abtest.json"
    numbers.write_text(json.dumps(comparison.to_dict() | {"daily": daily}, indent=2, default=str), encoding="utf-8")
    return {"png": png, "html": page, "json": numbers}

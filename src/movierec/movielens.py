"""MovieLens ratings as stream lines, with slugs built the way the stream builds them."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from movierec.errors import BadInput
from movierec.synthetic import _time

_ARTICLE = re.compile(r"^(?P<title>.*), (?P<article>The|A|An|Les|La|Le|Il|El|Das|Die|Der)$")
_YEAR = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_PAREN = re.compile(r"\s*\([^)]*\)")
_DROP = re.compile(r"[^a-z0-9 .*_+-]")


def slugify(title: str) -> str:
    """`Shawshank Redemption, The (1994)` -> `the+shawshank+redemption+1994` (the stream's style).

    Commas become `_`, `&` and other punctuation vanish (leaving `++`),
    non-ASCII letters are dropped, and a title without a year ends in `+`.
    """
    year_match = _YEAR.search(title)
    year = year_match.group(1) if year_match else ""
    name = title[: year_match.start()] if year_match else title
    name = _PAREN.sub("", name).strip()  # alternative titles: "(Cité des enfants perdus, La)"
    article = _ARTICLE.match(name)
    if article:
        name = f"{article['article']} {article['title']}"
    name = name.encode("ascii", "ignore").decode().lower().replace(",", "_").replace("+", "")
    name = _DROP.sub("", name)
    return f"{name.replace(' ', '+')}+{year}"


def _unique_slugs(titles: dict[int, str]) -> dict[int, str]:
    slugs, taken = {}, set()
    for movie_id in sorted(titles):
        slug = slugify(titles[movie_id])
        while slug in taken:  # two MovieLens movies may share a title and year
            slug = f"{slug}+"
        taken.add(slug)
        slugs[movie_id] = slug
    return slugs


def load_ratings(path: Path) -> tuple[list[tuple[int, int, float, int]], dict[int, str]]:
    """(user, movie, rating, unix time) rows and movie titles, from ml-100k or ml-latest-small."""
    path = Path(path)
    if (path / "u.data").exists():
        rows = []
        for line in (path / "u.data").read_text().splitlines():
            user, movie, rating, ts = line.split("\t")
            rows.append((int(user), int(movie), float(rating), int(ts)))
        titles = {}
        for line in (path / "u.item").read_text(encoding="latin-1").splitlines():
            fields = line.split("|")
            titles[int(fields[0])] = fields[1]
        return rows, titles
    if (path / "ratings.csv").exists():
        with open(path / "ratings.csv", newline="") as f:
            rows = [
                (int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                for r in csv.DictReader(f)
            ]
        with open(path / "movies.csv", newline="", encoding="utf-8") as f:
            titles = {int(r["movieId"]): r["title"] for r in csv.DictReader(f)}
        return rows, titles
    raise BadInput(f"{path} holds neither u.data (ml-100k) nor ratings.csv (ml-latest-small)")


def stream_lines(path: Path) -> Iterator[str]:
    """Each rating as a `GET /rate/<slug>=<1..5>` line, in time order; half stars round up."""
    rows, titles = load_ratings(path)
    slugs = _unique_slugs(titles)
    for user, movie, rating, ts in sorted(rows, key=lambda r: (r[3], r[0], r[1])):
        when = datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None)
        yield f"{_time(when)},{user},GET /rate/{slugs[movie]}={max(1, math.ceil(rating))}"

"""MovieLens ratings as stream lines, with slugs built the way the stream builds them."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
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
        when = datetime.fromtimestamp(ts, tz=UTC).replace(tzinfo=None)
        yield f"{_time(when)},{user},GET /rate/{slugs[movie]}={max(1, math.ceil(rating))}"


# What `--movielens NAME` downloads: GroupLens's zips, checked file by file against pinned digests.
DOWNLOADS = {
    "ml-latest-small": {
        "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    },
    "ml-100k": {
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    },
}
DEFAULT_MIRROR = "https://files.grouplens.org/datasets/movielens"


def resolve(spec: str, *, cache: Path | None = None) -> Path:
    """A MovieLens folder: `spec` itself if it is one, else a known name fetched into the cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec not in DOWNLOADS:
        raise BadInput(f"{spec} is neither a folder nor one of {', '.join(DOWNLOADS)}")
    folder = (cache or Path.home() / ".cache" / "movierec") / spec
    if not all(_sha256(folder / name) == digest for name, digest in DOWNLOADS[spec].items()):
        _download(spec, folder)
    return folder


def _sha256(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _download(name: str, folder: Path) -> None:
    import hashlib
    import io
    import os
    import zipfile

    import requests

    url = f"{os.environ.get('MOVIEREC_MOVIELENS_MIRROR', DEFAULT_MIRROR).rstrip('/')}/{name}.zip"
    try:
        answer = requests.get(url, timeout=60)
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise BadInput(f"cannot download {url} ({exc}); pass --movielens PATH to a local copy") from None
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        files = {n: archive.read(f"{name}/{n}") for n in DOWNLOADS[name] if f"{name}/{n}" in archive.namelist()}
    for file_name, digest in DOWNLOADS[name].items():
        if file_name not in files or hashlib.sha256(files[file_name]).hexdigest() != digest:
            raise BadInput(f"{url}: {file_name} is missing or fails its sha256 check; nothing was kept")
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, data in files.items():
        tmp = folder / f".{file_name}.part"
        tmp.write_bytes(data)
        tmp.replace(folder / file_name)

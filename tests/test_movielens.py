"""MovieLens as stream lines: slugs in the stream's style, and checksum-verified downloads."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile

import pytest

from movierec.errors import BadInput
from movierec.movielens import resolve, slugify, stream_lines
from movierec.stream import Rate, parse_line
from tests.conftest import dataset


@pytest.mark.parametrize(
    "title, slug",
    [
        ("Shawshank Redemption, The (1994)", "the+shawshank+redemption+1994"),
        ("Toy Story (1995)", "toy+story+1995"),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", "the+city+of+lost+children+1995"),
        ("Angels & Demons (2009)", "angels++demons+2009"),
        ("20,000 Leagues Under the Sea (1997)", "20_000+leagues+under+the+sea+1997"),
        ("...And Justice for All (1979)", "...and+justice+for+all+1979"),
        ("Connections", "connections+"),
    ],
)
def test_slugs_follow_the_stream(title, slug):
    assert slugify(title) == slug


def test_every_movielens_rating_becomes_a_valid_rate_line():
    lines = list(stream_lines(dataset("ml-100k")))
    assert len(lines) == 100_000
    records = [parse_line(line) for line in lines]
    assert all(isinstance(r, Rate) and 1 <= r.rating <= 5 for r in records)
    assert [r.time for r in records] == sorted(r.time for r in records)
    assert len({r.movie_id for r in records}) == 1682  # distinct slugs even where titles collide


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server holding ml-100k.zip built from the shared copy, as GroupLens lays it out."""
    root = tmp_path / "mirror"
    root.mkdir()
    source = dataset("ml-100k")
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as archive:
        for name in ("u.data", "u.item", "README"):
            archive.write(source / name, f"ml-100k/{name}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_is_checksum_verified_and_cached(mirror, tmp_path, monkeypatch):
    root, url = mirror
    monkeypatch.setenv("MOVIEREC_MOVIELENS_MIRROR", url)
    folder = resolve("ml-100k", cache=tmp_path / "cache")
    assert (folder / "u.data").read_bytes() == (dataset("ml-100k") / "u.data").read_bytes()
    (root / "ml-100k.zip").unlink()  # cached: no second download
    assert resolve("ml-100k", cache=tmp_path / "cache") == folder


def test_a_corrupted_download_is_refused_and_nothing_kept(mirror, tmp_path, monkeypatch):
    root, url = mirror
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t1\t5\t881250949\n")
        archive.write(dataset("ml-100k") / "u.item", "ml-100k/u.item")
    monkeypatch.setenv("MOVIEREC_MOVIELENS_MIRROR", url)
    with pytest.raises(BadInput, match="sha256"):
        resolve("ml-100k", cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "ml-100k").exists()


def test_unknown_names_and_unreachable_mirrors_say_so(tmp_path, monkeypatch):
    with pytest.raises(BadInput, match="neither a folder"):
        resolve("ml-1b", cache=tmp_path)
    monkeypatch.setenv("MOVIEREC_MOVIELENS_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(BadInput, match="cannot download"):
        resolve("ml-latest-small", cache=tmp_path)

"""The course-shaped stream of the scale benchmark: real stream lines, sized as asked, an honest future."""

from __future__ import annotations

import pytest

from movierec.course_world import DAY, future_truth, make_course_world, stream_lines
from movierec.stream import CreateAccount, LineError, Rate, RecoRequest, Watch, parse_line


@pytest.fixture(scope="module")
def world():
    return make_course_world(users=2_000, movies=3_000, lines=40_000, days=10, releases=100, seed=1)


def test_lines_parse_as_the_stream_and_come_to_about_the_size_asked(world) -> None:
    kinds, bad = {}, 0
    lines = list(stream_lines(world, bad_every=1000))
    for line in lines:
        try:
            record = parse_line(line)
        except LineError:
            bad += 1
            continue
        kinds[type(record)] = kinds.get(type(record), 0) + 1
    assert 0.8 * 40_000 < len(lines) < 1.2 * 40_000
    assert {Watch, Rate, RecoRequest, CreateAccount} <= set(kinds) and kinds[Watch] > 0.8 * len(lines)
    assert 0 < bad <= len(lines) // 1000 + 1  # the malformed lines, and only those
    assert all(1 <= r.rating <= 5 for r in map(parse_line, [x for x in lines if "/rate/" in x]))


def test_the_future_holds_only_movies_new_to_each_user_after_the_cut(world) -> None:
    cut = 8 * DAY
    truth = future_truth(world, cut)
    before = {(u, str(world.movie_ids[m])) for u, m, s in zip(world.user, world.movie, world.start) if s < cut}
    assert truth and all((user, movie) not in before for user, movies in truth.items() for movie in movies)
    past = list(stream_lines(world, until=cut))
    assert all(line[:10] <= "2026-11-09" for line in past)  # sessions from day 8 on are held back

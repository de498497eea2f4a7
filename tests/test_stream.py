"""The stream grammar, pinned on the real course-stream samples and their quirks."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from movierec.stream import CreateAccount, LineError, Rate, RecoRequest, Watch, parse_line
from tests.conftest import dataset


def test_every_real_line_parses_or_has_a_specific_reason():
    folder = dataset("course-stream")
    kinds, reasons = Counter(), Counter()
    for path in sorted(folder.glob("*.log")):
        for raw in path.read_bytes().splitlines():
            try:
                kinds[parse_line(raw.decode("utf-8")).kind] += 1
            except LineError as exc:
                reasons[exc.reason] += 1
    # SOURCE.md's counts: 36,742 watch (12 of them in the 14 Kafka CSV rows), 60,620 rate, 1,453 reco.
    assert kinds["watch"] == 36_730
    assert kinds["rate"] == 60_615  # the two synthetic unit-test lines and 3 broken timestamps are quarantined
    assert kinds["reco"] == 1_451
    assert sum(kinds.values()) + sum(reasons.values()) == 98_815
    assert reasons == {"bad_time": 19}


def test_seconds_may_be_omitted():
    assert parse_line("2022-10-07T13:44,86970,GET /data/m/fatso+2008/67.mpg") == Watch(
        datetime(2022, 10, 7, 13, 44), 86970, "fatso+2008", 67
    )


@pytest.mark.parametrize(
    "stamp, micros",
    [("2022-10-07T14:21:02.071", 71_000), ("2023-04-23T23:46:18.872015", 872_015), ("2025-10-17T01:33:45.122692921", 122_692)],
)
def test_fractions_of_3_6_9_digits(stamp, micros):
    line = f"{stamp},1,recommendation request h:8082, status 200, result: a+2001, b+2002, 12 ms"
    assert parse_line(line).time.microsecond == micros


@pytest.mark.parametrize(
    "line",
    [
        "2024-170-14T15:34:12,49623,GET /rate/rude+awakening+1989=2",
        "2024-10-14T15 :42:39,172236,GET /rate/robots+2005=3",
        "2024-10-14T16G:55:12,484541,GET /rate/el+dorado+1988=4",
        "2022-10-28T 04:23:23,531789,GET /data/m/the+shawshank+redemption+1994/85.mpg",
        "2022-1k0-28T04:23:23,1,GET /data/m/inception+2010/1.mpg",
        "2022-13-40T04:23:23,1,GET /data/m/inception+2010/1.mpg",
        "1700000000,user123,GET /rate/50=4",
    ],
)
def test_broken_timestamps_are_bad_time(line):
    with pytest.raises(LineError) as info:
        parse_line(line)
    assert info.value.reason == "bad_time"


@pytest.mark.parametrize("movie", ["connections+", "holes+in+my+shoes+", "jails_+hospitals++hip-hop+", "61*+2001", "...and+justice+for+all+1979"])
def test_ids_ending_in_plus_and_odd_ids(movie):
    assert parse_line(f"2024-10-14T15:20:53,69835,GET /rate/{movie}=3") == Rate(
        datetime(2024, 10, 14, 15, 20, 53), 69835, movie, 3
    )


def test_result_with_an_error_text_holding_commas():
    line = ("2023-04-23T23:46:18.872015,698809,recommendation request 17645-team12.isri.cmu.edu:8082, status 0, "
            "result: java.util.concurrent.TimeoutException: Request timeout to 17645-team12.isri.cmu.edu/128.2.205.130:8082 "
            "after 800 ms, 832 ms")
    record = parse_line(line)
    assert isinstance(record, RecoRequest)
    assert (record.status, record.latency_ms, record.movies) == (0, 832, ())
    assert record.result.endswith("after 800 ms")


def test_status_400_with_unbalanced_bracket_keeps_its_text():
    line = ('2022-10-07T14:21:02.071,275764,recommendation request fall2022-comp585-3.cs.mcgill.ca:8082, status 400, '
            'result: movie ["winter+in+wartime+2008" not found, 26 ms')
    record = parse_line(line)
    assert record.status == 400 and record.result == 'movie ["winter+in+wartime+2008" not found' and record.latency_ms == 26


def test_successful_result_lists_movies_in_order():
    record = parse_line("2023-04-23T23:46:19.304519,207747,recommendation request h:8082, status 200, "
                        "result: the+shawshank+redemption+1994, the+godfather+1972, 257 ms")
    assert record.movies == ("the+shawshank+redemption+1994", "the+godfather+1972")


def test_latency_without_space_and_create_account():
    record = parse_line("2026-01-20T10:00:00,5,recommendation request h:8082, status 0, result: java.net.ConnectException: Connection refused, 1ms")
    assert record.latency_ms == 1
    assert parse_line("2026-01-20T10:00:01,5,GET /create_account") == CreateAccount(datetime(2026, 1, 20, 10, 0, 1), 5)


def test_ratings_1_to_10_accepted_others_not():
    assert parse_line("2026-01-20T10:00:00,5,GET /rate/x+2001=10").rating == 10
    for bad in ("0", "11", "999999999999"):
        with pytest.raises(LineError) as info:
            parse_line(f"2026-01-20T10:00:00,5,GET /rate/x+2001={bad}")
        assert info.value.reason == "bad_rating"


@pytest.mark.parametrize(
    "line, reason",
    [
        ("2022-10-28T04:23:23,-25611,GET /data/m/the+shawshank+redemption+1994/100.mpg", "bad_user_id"),
        ("2022-10-28T04:23:23,24f162,GET /data/m/inception+2010/1.mpg", "bad_user_id"),
        ("2022-10-28T04:23:23,99999999999999999999,GET /data/m/inception+2010/1.mpg", "bad_user_id"),
        ("2022-10-28T04:23:23,١٢,GET /data/m/inception+2010/1.mpg", "bad_user_id"),
        ("2022-10-28T04:23:23,1,GET /data/m/inception+2010/999999.mpg", "bad_minute"),
        ("2022-10-28T04:23:23,1,GET /data/m/a b/1.mpg", "bad_movie_id"),
        ("2022-10-28T04:23:23,1,GET /data/m//1.mpg", "bad_watch"),
        ("2022-10-28T04:23:23,1,GET /rate/x+2001=abc", "bad_rate"),
        ("2022-10-28T04:23:23,1,POST /anything", "unknown_request"),
        ("2022-10-28T04:23:23,1", "bad_shape"),
        ("", "empty"),
        ("2022-10-28T04:23:23,1,GET /rate/x\x00+2001=3", "control_chars"),
        ("2022-10-28T04:23:23,1,GET /rate/" + "x" * 9000 + "=3", "too_long"),
        ("2022-10-28T04:23:23,1,GET /rate/" + "x" * 300 + "=3", "bad_movie_id"),
        ("2022-10-28T04:23:23,1,recommendation request h:8082, status 200, result: a, b c, 3 ms", "bad_movie_id"),
        ("2022-10-28T04:23:23,1,recommendation request h:8082 status 200", "bad_reco"),
    ],
)
def test_malformed_lines_have_specific_reasons(line, reason):
    with pytest.raises(LineError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_fast_path_agrees_with_the_general_parser_on_every_real_and_synthetic_line():
    from movierec.stream import parse_line_slowly
    from tests.conftest import small_world_lines

    lines = [raw.decode("utf-8") for path in dataset("course-stream").glob("*.log") for raw in path.read_bytes().splitlines()]
    lines += small_world_lines() + [
        "2026-11-01T10:00:00,1,GET /rate/a\u00a0b=5",  # a non-ASCII space: not an id character
        "2026-11-01T10:00:00,1,GET /data/m/x+2001/1234567.mpg",
        "2026-11-01T10:00:00,9223372036854775808,GET /rate/x+2001=5",
        "2026-02-30T10:00:00,1,GET /rate/x+2001=5",
    ]

    def outcome(parse, line):
        try:
            return parse(line)
        except LineError as exc:
            return exc.reason

    for line in lines:
        assert outcome(parse_line, line) == outcome(parse_line_slowly, line), line

"""The stream line grammar (SPEC §3) as typed records.

`parse_line` returns a record or raises `LineError` with a short, specific
reason code; the ingest path stores such lines in the quarantine table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from movierec.errors import MovierecError

MAX_LINE_CHARS = 8192
MAX_ID_CHARS = 256
MAX_MINUTE = 100_000
RATING_RANGE = (1, 10)  # 1-5 in the 2019-2025 streams; 1-10 from 2026 on
USER_ID_LIMIT = 2**63
# A line's time is when it happened: it cannot be later than its arrival. This much slack covers
# producer clocks running fast; ingest quarantines a line beyond it as `future_time`
# (MOVIEREC_INGEST_FUTURE_HOURS; `movierec simulate` dates its sessions days ahead), and a
# snapshot holding one warns (one line dated 9999-12-31 once made every other event look ancient
# to the popular fallback).
FUTURE_TOLERANCE = timedelta(hours=1)

_TIME_PART = r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
_TIME = re.compile(_TIME_PART)
_USER = re.compile(r"\d{1,19}", re.ASCII)
_MOVIE = re.compile(r"[^\s/,=\x00-\x1f\x7f]+")
_WATCH = re.compile(r"GET /data/m/([^/]+)/(\d+)\.mpg", re.ASCII)
_RATE = re.compile(r"GET /rate/([^=]+)=(\d+)", re.ASCII)
_RECO = re.compile(r"recommendation request (\S+), status (-?\d+), result: (.*), (\d+) ?ms", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Fast path: a whole well-formed watch or rate line in one match; anything else takes the slow
# path, which finds the specific reason. Both accept exactly the same lines.
_FAST = re.compile(
    _TIME_PART + r",([0-9]{1,19}),GET /(?:data/m/([^\s/,=\x00-\x1f\x7f]{1,256})/([0-9]{1,6})\.mpg"
    r"|rate/([^\s/,=\x00-\x1f\x7f]{1,256})=([0-9]{1,2}))"
)


class LineError(MovierecError):
    """A line that does not parse; `reason` is a short code counted in metrics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Watch:
    time: datetime
    user_id: int
    movie_id: str
    minute: int
    kind = "watch"


@dataclass(frozen=True, slots=True)
class Rate:
    time: datetime
    user_id: int
    movie_id: str
    rating: int
    kind = "rate"


@dataclass(frozen=True, slots=True)
class RecoRequest:
    time: datetime
    user_id: int
    server: str
    status: int
    result: str  # the raw result text: ids, or the service's error message
    movies: tuple[str, ...]  # parsed ids when status is 200, else empty
    latency_ms: int
    kind = "reco"


@dataclass(frozen=True, slots=True)
class CreateAccount:
    time: datetime
    user_id: int
    kind = "account"


Record = Watch | Rate | RecoRequest | CreateAccount
KINDS = ("watch", "rate", "reco", "account")


def parse_time(text: str) -> datetime:
    """ISO-8601 without zone, seconds and fraction optional; fractions beyond µs are truncated."""
    match = _TIME.fullmatch(text)
    if not match:
        raise LineError("bad_time", text[:64])
    year, month, day, hour, minute, second, fraction = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros
        )
    except ValueError:
        raise LineError("bad_time", text[:64]) from None


def parse_user_id(text: str) -> int:
    if not _USER.fullmatch(text) or int(text) >= USER_ID_LIMIT:
        raise LineError("bad_user_id", text[:64])
    return int(text)


def parse_movie_id(text: str) -> str:
    if len(text) > MAX_ID_CHARS or not _MOVIE.fullmatch(text):
        raise LineError("bad_movie_id", text[:64])
    return text


def parse_line(line: str) -> Record:
    """One stream line (without its newline) as a typed record, or LineError."""
    line = line.rstrip("\r\n")
    if (fast := _FAST.fullmatch(line)) and (record := _fast_record(fast)) is not None:
        return record
    return parse_line_slowly(line)


def parse_line_slowly(line: str) -> Record:
    """The general parser: every kind of line, and the specific reason for a bad one."""
    if not line.strip():
        raise LineError("empty")
    if len(line) > MAX_LINE_CHARS:
        raise LineError("too_long", f"{len(line)} chars")
    if _CONTROL.search(line):
        raise LineError("control_chars")
    parts = line.split(",", 2)
    if len(parts) < 3:
        raise LineError("bad_shape", "expected <time>,<userid>,<request>")
    time = parse_time(parts[0])
    user_id = parse_user_id(parts[1])
    request = parts[2]
    if request.startswith("GET /data/m/"):
        return _parse_watch(time, user_id, request)
    if request.startswith("GET /rate/"):
        return _parse_rate(time, user_id, request)
    if request.startswith("recommendation request "):
        return _parse_reco(time, user_id, request)
    if request == "GET /create_account":
        return CreateAccount(time, user_id)
    raise LineError("unknown_request", request[:64])


def _fast_record(match: re.Match) -> Record | None:
    """The record of a fast-path match, or None where a value is out of range (the slow path says why)."""
    year, month, day, hour, minute, second, fraction, user, watched, at_minute, rated, rating = match.groups()
    if int(user) >= USER_ID_LIMIT or len(match.string) > MAX_LINE_CHARS:
        return None
    try:
        micros = int(fraction.ljust(6, "0")[:6]) if fraction else 0
        time = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros)
    except ValueError:
        return None
    if watched is not None:
        return Watch(time, int(user), watched, int(at_minute)) if int(at_minute) <= MAX_MINUTE else None
    if RATING_RANGE[0] <= int(rating) <= RATING_RANGE[1]:
        return Rate(time, int(user), rated, int(rating))
    return None


def _parse_watch(time: datetime, user_id: int, request: str) -> Watch:
    match = _WATCH.fullmatch(request)
    if not match:
        raise LineError("bad_watch", request[:64])
    minute = int(match.group(2))
    if minute > MAX_MINUTE:
        raise LineError("bad_minute", match.group(2)[:32])
    return Watch(time, user_id, parse_movie_id(match.group(1)), minute)


def _parse_rate(time: datetime, user_id: int, request: str) -> Rate:
    match = _RATE.fullmatch(request)
    if not match:
        raise LineError("bad_rate", request[:64])
    rating_text = match.group(2)
    if len(rating_text) > 2 or not RATING_RANGE[0] <= int(rating_text) <= RATING_RANGE[1]:
        raise LineError("bad_rating", rating_text[:32])
    return Rate(time, user_id, parse_movie_id(match.group(1)), int(rating_text))


def _parse_reco(time: datetime, user_id: int, request: str) -> RecoRequest:
    match = _RECO.fullmatch(request)
    if not match:
        raise LineError("bad_reco", request[:64])
    server, status_text, result, latency = match.groups()
    status = int(status_text)
    movies: tuple[str, ...] = ()
    if status == 200:
        # Ids are separated by ", "; a 200 result that is not a clean id list is malformed.
        movies = tuple(parse_movie_id(m) for m in result.split(", "))
    return RecoRequest(time, user_id, server, status, result, movies, int(latency))

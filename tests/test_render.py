"""movierec._render: the C renderer gives exactly Python's b",".join, and refuses what it cannot render."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from movierec._render import Renderer

from tests.conftest import dataset


@pytest.fixture(scope="module")
def movie_ids() -> list[bytes]:
    """The course's real movie ids, plus ids that stress the byte handling."""
    path = dataset("course-stream") / "movies.jsonl"
    ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    return [m.encode() for m in ids + ["amélie+2001", "🎬", "", "x" * 5000]]


def filled(ids: list[bytes]) -> Renderer:
    renderer = Renderer()
    for movie in ids:
        renderer.add(movie)
    return renderer


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_join_equals_python_for_every_code_width_and_slices_as_shards_hold_them(movie_ids, dtype):
    renderer = filled(movie_ids)
    assert len(renderer) == len(movie_ids)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, len(movie_ids), 20 * 500).astype(dtype)
    codes[:4] = np.arange(len(movie_ids) - 4, len(movie_ids))  # the empty and the longest ids, last codes
    view = memoryview(codes)  # Shard.codes_at slices a memoryview of the shard's codes
    for row in range(500):
        answer = view[row * 20 : (row + 1) * 20]
        assert renderer.join(answer) == b",".join(movie_ids[c] for c in answer)
    assert renderer.join(codes[:1]) == movie_ids[codes[0]]
    assert renderer.join(codes[:0]) == b""


def test_a_code_outside_the_vocabulary_is_an_index_error_not_a_read_past_the_buffer(movie_ids):
    renderer = filled(movie_ids[:10])
    for codes in (np.array([3, 10], np.uint16), np.array([-1], np.int32), np.array([2**40], np.int64)):
        with pytest.raises(IndexError, match="outside the vocabulary of 10"):
            renderer.join(codes)
    assert renderer.join(np.array([9], np.uint16)) == movie_ids[9]  # unchanged by the refusals
    with pytest.raises(IndexError):
        Renderer().join(np.array([0], np.uint16))


@pytest.mark.parametrize(
    "codes",
    [np.array([1.0]), np.array([1], np.uint32), np.array([1], np.int8), b"\x01\x00", np.array([1], ">u2")],
    ids=["float", "uint32", "int8", "bytes", "big-endian"],
)
def test_codes_of_another_type_are_refused(movie_ids, codes):
    with pytest.raises(TypeError, match="codes must be one-dimensional uint16, int32 or int64"):
        filled(movie_ids[:10]).join(codes)


def test_strided_codes_and_non_buffers_are_refused(movie_ids):
    renderer = filled(movie_ids[:10])
    with pytest.raises(BufferError):
        renderer.join(memoryview(np.arange(10, dtype=np.uint16))[::2])
    for shape in (np.uint16(1), np.zeros((2, 2), np.uint16)):  # a scalar, a matrix
        with pytest.raises(TypeError, match=f"got {np.ndim(shape)} dimensions of format H"):
            renderer.join(shape)
    with pytest.raises(TypeError):
        renderer.join([1, 2])
    with pytest.raises(TypeError, match="add\\(\\) takes bytes, not str"):
        renderer.add("amélie")
    assert len(renderer) == 10


def test_joins_stay_right_while_another_thread_grows_the_vocabulary(movie_ids):
    """A cold instance adds a shard's movies while the event loop renders answers from the
    movies already there: growing the buffer must never show a join a moved or half-written one."""
    renderer = filled(movie_ids[:100])
    codes = np.arange(100, dtype=np.uint16)
    expected = b",".join(movie_ids[:100])
    done = threading.Event()

    def grow():
        for _ in range(200):
            for movie in movie_ids:
                renderer.add(movie)
        done.set()

    grower = threading.Thread(target=grow)
    grower.start()
    joins = 0
    while not done.is_set():
        assert renderer.join(codes) == expected
        joins += 1
    grower.join()
    assert joins > 0 and len(renderer) == 100 + 200 * len(movie_ids)
    assert renderer.join(np.array([len(renderer) - 1], np.int32)) == movie_ids[-1]


def user_table(movie_ids, *, partitions=3, users=400, slot_dtype=np.int32, offset_dtype=np.int32, code_dtype=np.uint16):
    """A run's tables as VariantIndex gives them: user id -> row * partitions + partition, and
    per partition the list offsets and codes; every fourth id is a user the run does not know."""
    rng = np.random.default_rng(1)
    slots = np.full(users, -1, slot_dtype)
    rows: list[list[np.ndarray]] = [[] for _ in range(partitions)]
    for user in range(users):
        if user % 4:
            p = user % partitions
            slots[user] = len(rows[p]) * partitions + p
            rows[p].append(rng.choice(len(movie_ids), rng.integers(0, 21), replace=False))
    offsets = tuple(np.concatenate([[0], np.cumsum([len(r) for r in part])]).astype(offset_dtype) for part in rows)
    codes = tuple(np.concatenate([np.empty(0, code_dtype), *part]).astype(code_dtype) for part in rows)
    return slots, partitions, offsets, codes


@pytest.mark.parametrize(
    "dtypes",
    [(np.int32, np.int32, np.uint16), (np.int64, np.int64, np.int32), (np.int32, np.int64, np.int64)],
    ids=["int32-slots", "int64-everything", "int64-offsets"],
)
def test_render_finds_and_joins_each_users_movies(movie_ids, dtypes):
    slots, partitions, offsets, codes = user_table(movie_ids, slot_dtype=dtypes[0], offset_dtype=dtypes[1],
                                                   code_dtype=dtypes[2])
    renderer = filled(movie_ids)
    renderer.set_users(memoryview(slots), partitions, tuple(map(memoryview, offsets)), codes)
    for user, slot in enumerate(slots):
        if slot < 0:
            assert renderer.render(user) is None
            continue
        row, p = divmod(int(slot), partitions)
        mine = codes[p][offsets[p][row] : offsets[p][row + 1]]
        assert renderer.render(user) == b",".join(movie_ids[c] for c in mine)
    for unknown in (-1, len(slots), 2**63 - 1, 2**70, -(2**70)):
        assert renderer.render(unknown) is None
    with pytest.raises(TypeError):
        renderer.render("7")


def test_render_refuses_tables_that_disagree_instead_of_reading_past_them(movie_ids):
    slots, partitions, offsets, codes = user_table(movie_ids)
    with pytest.raises(RuntimeError, match="needs set_users"):
        filled(movie_ids).render(1)
    renderer = filled(movie_ids)
    with pytest.raises(ValueError, match="one of codes per partition"):
        renderer.set_users(slots, partitions, offsets[:-1], codes)
    with pytest.raises(TypeError, match="slots must be one-dimensional int32 or int64"):
        renderer.set_users(slots.astype(np.uint16), partitions, offsets, codes)
    bad_slots, bad_offsets = slots.copy(), [o.copy() for o in offsets]
    bad_slots[1] = 10_000 * partitions + 1  # a row past its partition
    bad_offsets[2][1] = len(codes[2]) + 5  # a row's movies past its partition's codes
    renderer.set_users(bad_slots, partitions, tuple(bad_offsets), codes)
    with pytest.raises(IndexError, match="row 10000 is past partition 1"):
        renderer.render(1)
    (user,) = [u for u, s in enumerate(bad_slots) if s == 2]  # row 0 of partition 2
    with pytest.raises(IndexError, match="outside partition 2"):
        renderer.render(user)
    assert renderer.render(3) is not None  # users of partition 0 still answer
    with pytest.raises(RuntimeError, match="already called"):
        renderer.set_users(slots, partitions, offsets, codes)


def test_a_renderer_is_initialised_once_and_render_takes_only_an_int(movie_ids):
    """Re-initialising would free the tables under a render; converting a non-int id could run
    Python code (its __index__) in the middle of one. Both are refused, and nothing changes."""
    slots, partitions, offsets, codes = user_table(movie_ids)
    renderer = filled(movie_ids)
    renderer.set_users(slots, partitions, offsets, codes)
    expected = renderer.render(1)

    class Sneaky:
        def __index__(self):
            renderer.__init__()
            return 1

    with pytest.raises(TypeError, match="render\\(\\) takes an int user id, not Sneaky"):
        renderer.render(Sneaky())
    with pytest.raises(RuntimeError, match="initialised once"):
        renderer.__init__()
    assert renderer.render(1) == expected and renderer.render(True) == expected and len(renderer) == len(movie_ids)


def test_a_slot_past_every_row_is_an_index_error_not_an_overflow():
    renderer = filled([b"a"])
    renderer.set_users(np.array([2**63 - 1], np.int64), 1, (np.array([0, 1], np.int64),), (np.array([0], np.uint16),))
    with pytest.raises(IndexError, match="is past partition 0"):
        renderer.render(0)


def test_codes_rewritten_by_another_thread_during_a_join_never_overrun_the_answer():
    """The arrays are shared: numpy may rewrite them from a thread that released the GIL. Each
    code is read once, so an answer is always a well-formed list of known ids."""
    long = b"x" * 100
    renderer = filled([b"a", long])
    codes, zeros, ones = np.zeros(200_000, np.uint16), np.zeros(200_000, np.uint16), np.ones(200_000, np.uint16)
    stop = threading.Event()

    def rewrite():
        while not stop.is_set():
            np.copyto(codes, ones)
            np.copyto(codes, zeros)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(200):
            joined = renderer.join(codes)
            assert joined.count(b",") == len(codes) - 1 and set(joined.split(b",")) <= {b"a", long}
    finally:
        stop.set()
        writer.join()


def test_a_renderer_never_initialised_refuses_every_call():
    bare = Renderer.__new__(Renderer)
    for call in (lambda: bare.add(b"x"), lambda: bare.join(np.array([0], np.uint16)),
                 lambda: bare.set_users(np.array([0], np.int32), 1, (np.array([0, 0], np.int32),), (np.array([], np.uint16),))):
        with pytest.raises(RuntimeError, match="not initialised"):
            call()
    assert len(bare) == 0

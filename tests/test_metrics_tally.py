"""metrics.Tally and its C counts (movierec._tally): answers counted in bulk end up exactly where
observing each one would put them, threads and forks lose none, bad calls change nothing."""

from __future__ import annotations

import gc
import math
import random
import re
import sys
import threading
import time

import pytest
from movierec._tally import Counts
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from movierec.metrics import LATENCY_BUCKETS, Tally

LABELS = [("200", "personalized", "A"), ("200", "popular", "B"), ("400", "none", "none")]


def pair(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    counter = Counter("answers", "answers", ["status", "source", "variant"], registry=registry)
    return counter, Histogram("seconds", "seconds", buckets=LATENCY_BUCKETS, registry=registry)


def page(registry: CollectorRegistry) -> str:
    """The exposition without creation times and the float sum (added up in another order)."""
    lines = generate_latest(registry).decode().splitlines()
    return "\n".join(line for line in lines if "_created" not in line and not line.startswith("seconds_sum"))


def test_bulk_counts_equal_one_observation_at_a_time():
    rng = random.Random(0)
    # every bound exactly (Prometheus buckets are "less or equal"), between them, zero and past the last
    seconds = [*LATENCY_BUCKETS, 0.0, 7.5, *(rng.expovariate(200) for _ in range(2000))]
    each, bulk = CollectorRegistry(), CollectorRegistry()
    counter, histogram = pair(each)
    tally = Tally(*pair(bulk), flush_seconds=3600)
    for i, s in enumerate(seconds):
        labels = LABELS[i % 3]
        counter.labels(*labels).inc()
        tally.record(tally.slot(labels), None if labels[0] == "400" else s)
        if labels[0] != "400":
            histogram.observe(s)
        if i == 1000:
            tally.flush()  # flushes add up; they do not overwrite
    tally.flush()
    assert page(bulk) == page(each)
    assert abs(bulk.get_sample_value("seconds_sum") - each.get_sample_value("seconds_sum")) < 1e-9
    assert re.search(r'seconds_bucket\{le="0.001"\} [1-9]', page(bulk))


@pytest.mark.parametrize("flushers", [1, 2])
def test_nothing_is_lost_or_counted_twice_when_threads_record_while_it_flushes(flushers: int):
    registry = CollectorRegistry()
    counter, histogram = pair(registry)
    tally = Tally(counter, histogram, flush_seconds=3600)  # these threads flush, as often as they can
    per_thread, threads = 20_000, 4
    slot = tally.slot(LABELS[0])

    def work():
        for _ in range(per_thread):
            tally.record(slot, 0.002)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()

        def flush_while_recording():
            while any(w.is_alive() for w in workers):
                tally.flush()

        others = [threading.Thread(target=flush_while_recording) for _ in range(flushers - 1)]
        for f in others:
            f.start()
        flush_while_recording()
        for t in workers + others:
            t.join()
        tally.flush()
    finally:
        sys.setswitchinterval(interval)
    total = per_thread * threads
    labels = dict(zip(("status", "source", "variant"), LABELS[0]))
    assert registry.get_sample_value("answers_total", labels) == total
    assert registry.get_sample_value("seconds_count") == total
    assert abs(registry.get_sample_value("seconds_sum") - 0.002 * total) < 1e-6


def test_a_failed_flush_loses_that_batch_and_the_thread_goes_on(monkeypatch, caplog):
    registry = CollectorRegistry()
    counter, histogram = pair(registry)
    tally = Tally(counter, histogram, flush_seconds=0.05)
    labels = dict(zip(("status", "source", "variant"), LABELS[0]))
    failures = []

    def labels_failing_once(*values):
        if not failures:
            failures.append(values)
            raise OSError("metrics file unwritable")
        return Counter.labels(counter, *values)

    monkeypatch.setattr(counter, "labels", labels_failing_once)
    tally.record(tally.slot(LABELS[0]), 0.002)  # starts the flushing thread; its first flush fails
    deadline = time.monotonic() + 5
    while not failures:
        assert time.monotonic() < deadline, "the flushing thread never ran"
        time.sleep(0.01)
    tally.record(tally.slot(LABELS[0]), 0.002)
    while registry.get_sample_value("answers_total", labels) != 1:
        assert time.monotonic() < deadline, "the thread stopped adding after a failed flush"
        time.sleep(0.01)
    assert "adding tallied answers to the metrics failed" in caplog.text


def test_a_label_set_keeps_its_slot_and_new_ones_count_from_zero():
    registry = CollectorRegistry()
    tally = Tally(*pair(registry), flush_seconds=3600)
    first = tally.slot(LABELS[0])
    tally.record(first)
    second = tally.slot(LABELS[1])  # the table grows while it holds a count
    assert (first, second, tally.slot(LABELS[0]), tally.slot(("200", "personalized", "A"))) == (0, 1, 0, 0)
    tally.record(second)
    tally.flush()
    for labels in LABELS[:2]:
        assert registry.get_sample_value("answers_total", dict(zip(("status", "source", "variant"), labels))) == 1


def test_a_forked_worker_starts_from_zero_with_its_own_flushing_thread():
    registry = CollectorRegistry()
    tally = Tally(*pair(registry), flush_seconds=3600)
    slot = tally.slot(LABELS[0])
    tally.record(slot, 0.002)  # the parent's answer, and its flushing thread
    flushers = sum(t.name == "metrics-tally" for t in threading.enumerate())
    tally._forget()  # what os.register_at_fork runs in a child
    tally.record(slot, 0.002)  # the child's first answer starts the child's thread
    assert sum(t.name == "metrics-tally" for t in threading.enumerate()) == flushers + 1
    tally.flush()
    assert registry.get_sample_value("seconds_count") == 1  # the parent's answer is the parent's to add


BOUNDS = [0.001, 0.01, math.inf]


@pytest.mark.parametrize("seconds", [-1.0, 0.0, 0.001, 0.0010001, 0.01, 5.0, math.inf, 3])
def test_counts_place_a_value_where_a_histogram_does(seconds):
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", buckets=BOUNDS[:-1], registry=registry)
    histogram.observe(seconds)
    counts = Counts(BOUNDS, lambda: None)
    counts.grow(1)
    counts.record(0, seconds)
    taken, buckets, total = counts.take()
    expected = [histogram._buckets[i].get() for i in range(len(BOUNDS))]
    assert (taken, buckets, total) == ([1], expected, float(seconds))
    assert counts.take() == ([0], [0, 0, 0], 0.0)


@pytest.mark.parametrize(("bounds", "error"), [
    ([0.1, 1.0], "must end with \\+Inf"),
    ([], "must end with \\+Inf"),
    ([1.0, 0.1, math.inf], "ascend"),
    ([0.1, 0.1, math.inf], "ascend"),
    ([math.nan, math.inf], "ascend"),
])
def test_counts_refuse_bounds_a_histogram_cannot_have(bounds, error):
    with pytest.raises(ValueError, match=error):
        Counts(bounds, lambda: None)


def test_counts_refuse_bad_calls_and_count_nothing_for_them():
    counts = Counts(BOUNDS, lambda: None)
    counts.grow(2)
    with pytest.raises(IndexError, match="slot 2 out of range"):
        counts.record(2, 0.5)
    with pytest.raises(IndexError):
        counts.record(-1)
    with pytest.raises(TypeError, match="int slot"):
        counts.record("0")
    with pytest.raises(TypeError):
        counts.record(0, "fast")
    with pytest.raises(TypeError):
        counts.record()
    with pytest.raises(RuntimeError, match="initialised once"):
        counts.__init__(BOUNDS, lambda: None)
    with pytest.raises(TypeError, match="callable"):
        Counts(BOUNDS, None)
    counts.grow(1)  # never shrinks
    counts.record(1)
    assert counts.take() == ([0, 1], [0, 0, 0], 0.0)
    with pytest.raises(RuntimeError, match="not initialised"):
        Counts.__new__(Counts).record(0)


def test_counts_run_on_first_once_even_when_it_fails():
    calls = []

    def on_first():
        calls.append(1)
        raise OSError("cannot start a thread")

    counts = Counts(BOUNDS, on_first)
    counts.grow(1)
    with pytest.raises(OSError):
        counts.record(0, 0.5)  # nothing counted
    counts.record(0, 0.5)  # later answers count; a request path does not fail on every answer
    counts.record(0, 0.5)
    assert len(calls) == 1
    assert counts.take() == ([2], [0, 0, 2], 1.0)


def test_a_tally_without_a_flushing_thread_still_counts(monkeypatch, caplog):
    registry = CollectorRegistry()
    tally = Tally(*pair(registry), flush_seconds=3600)

    def no_threads(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    tally.record(tally.slot(LABELS[0]), 0.002)  # the answer is not failed for it
    tally.flush()  # as each scrape does
    assert registry.get_sample_value("seconds_count") == 1
    assert "cannot start its flushing thread" in caplog.text


def test_an_answer_recorded_while_take_allocates_is_not_lost():
    """take() builds Python lists: a garbage collection may run there, and with it finalizers,
    during which another thread could record. Such an answer belongs to the next take()."""
    counts = Counts([1.0, math.inf], lambda: None)
    counts.grow(1)
    counts.record(0)
    counts.take()

    class Garbage:
        def __del__(self):
            counts.record(0, 0.5)  # what another thread could do when the GIL passes here

    recorded = taken = 0
    threshold = gc.get_threshold()
    try:
        for collect_after in (1, 2, 3, 4):
            for _ in range(25):
                drain = [[] for _ in range(200)] + [(i, i, i) for i in range(200)]  # no free lists to reuse
                gc.collect()
                garbage = Garbage()
                garbage.me = garbage  # cyclic: collected, and its finalizer run, only by a collection
                del garbage
                recorded += 1
                gc.set_threshold(collect_after)
                taken += sum(counts.take()[0])
                gc.set_threshold(*threshold)
                del drain
    finally:
        gc.set_threshold(*threshold)
    gc.collect()
    assert taken + sum(counts.take()[0]) == recorded


def test_counts_take_contrived_input_safely():
    class Shrinking:
        def __float__(self):
            bounds.clear()  # the list Counts was given; it reads a copy
            return 0.5

    bounds = [Shrinking(), *map(float, range(1, 1000)), math.inf]
    assert Counts(bounds, lambda: None).take() == ([], [0] * 1001, 0.0)

    counts = Counts.__new__(Counts)

    class Reinitialising:
        def __float__(self):
            counts.__init__(BOUNDS, lambda: None)  # initialises it while the outer call converts
            return 0.5

    with pytest.raises(RuntimeError, match="initialised once"):
        counts.__init__([Reinitialising(), math.inf], lambda: None)
    with pytest.raises(MemoryError):
        counts.grow(2**61 + 1)  # its size in bytes would wrap
    with pytest.raises(TypeError):
        counts.record(0, seconds=0.5)  # positional only: record(slot, seconds=None, /)


def test_a_take_that_runs_out_of_memory_keeps_its_numbers_for_the_next():
    testcapi = pytest.importorskip("_testcapi")  # CPython's own test hooks: fail the n-th allocation
    counts = Counts(BOUNDS, lambda: None)
    counts.grow(3)
    counts.record(0, 0.5)
    outcomes = []
    for failing in range(8):  # the copy, the lists, their ints, the tuple, the float: each in turn
        keep = [(i, i, i) for i in range(3000)], [i + 0.25 for i in range(3000)]  # no free lists to reuse
        testcapi.set_nomemory(failing, failing + 1)
        try:
            taken = counts.take()
        except MemoryError:
            outcomes.append("failed")
            continue
        finally:
            testcapi.remove_mem_hooks()
            del keep
        outcomes.append("taken")
        assert taken == ([1, 0, 0], [0, 0, 1], 0.5)  # the one answer, whatever failed before
        counts.record(0, 0.5)
    assert outcomes.count("failed") >= 2 and "taken" in outcomes, outcomes

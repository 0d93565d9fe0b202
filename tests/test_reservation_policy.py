"""The capacity policy (pure functions), with properties checked by hypothesis."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aglais_hub.offering import ClusterSize, Overhead, Resources, footprint
from aglais_hub.reservations.ledger import Caller, Ledger
from aglais_hub.reservations.policy import Span, first_conflict, free_timeline, usage_segments
from aglais_hub.reservations.rules import Refused
from aglais_hub.reservations.settings import settings_from_values
from aglais_hub.reservations.store import Store
from tests.reservation_values import reservation_values

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CAPACITY = Resources(8000, 32 * 2**30)
GiB = 2**30


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def over_capacity_anywhere(spans: list[Span], capacity: Resources) -> bool:
    """Brute force: the use at every start instant, summed span by span."""
    for probe in {s.start for s in spans}:
        used = Resources()
        for s in spans:
            if s.start <= probe < s.end:
                used = used + s.need
        if not used.fits_in(capacity):
            return True
    return False


def test_footprint_counts_driver_executors_and_spark_overhead() -> None:
    size = ClusterSize(
        executors=2,
        executor_cores=2,
        executor_memory=4 * GiB,
        driver_cores=1,
        driver_memory=1 * GiB,
    )
    need = footprint(size, Overhead(0.1, 384 * 2**20))
    # the auth proxy's 100m and 128 MiB, then the driver and two executors
    assert need.millicores == 100 + 5000
    # 1 GiB + 384 MiB (the minimum) for the driver; 4 GiB + 409 MiB (10%, in whole MiB,
    # as Spark counts it) for each executor
    MiB = 2**20
    assert need.memory == 128 * MiB + (GiB + 384 * MiB) + 2 * (4 * GiB + 409 * MiB)


def test_conflict_names_the_whole_full_stretch() -> None:
    booked = [
        Span(at(1), at(3), Resources(6000, GiB)),
        Span(at(2), at(5), Resources(1000, GiB)),
        Span(at(4), at(6), Resources(6000, GiB)),
    ]
    conflict = first_conflict(booked, Span(at(0), at(8), Resources(2000, GiB)), CAPACITY)
    # 2 cores are free 1-2 (enough), 1 core 2-3 (too few), then 7 free 3-4, 1 again 4-5
    assert (conflict.start, conflict.end) == (at(2), at(3))
    assert conflict.free.millicores == 1000
    assert "from 2026-12-01T02:00:00Z to 2026-12-01T03:00:00Z" in conflict.message()


def test_touching_bookings_do_not_overlap() -> None:
    booked = [Span(at(0), at(2), Resources(8000, GiB))]
    assert first_conflict(booked, Span(at(2), at(4), Resources(8000, GiB)), CAPACITY) is None


def test_reserve_is_never_booked() -> None:
    wanted = Span(at(0), at(1), Resources(7000, GiB))
    assert first_conflict([], wanted, CAPACITY, reserve=Resources(2000, 0)) is not None
    assert first_conflict([], wanted, CAPACITY, reserve=Resources(1000, 0)) is None


def test_memory_alone_can_be_the_limit() -> None:
    booked = [Span(at(0), at(1), Resources(1000, 30 * GiB))]
    conflict = first_conflict(booked, Span(at(0), at(1), Resources(1000, 4 * GiB)), CAPACITY)
    assert conflict is not None and "2 GiB" in conflict.message()


def test_free_timeline_pieces() -> None:
    booked = [Span(at(1), at(2), Resources(3000, GiB))]
    pieces = free_timeline(booked, at(0), at(3), CAPACITY)
    assert [(a, b, f.millicores) for a, b, f in pieces] == [
        (at(0), at(1), 8000),
        (at(1), at(2), 5000),
        (at(2), at(3), 8000),
    ]


# -- properties -----------------------------------------------------------------------------

needs = st.builds(
    Resources, st.integers(1, 6).map(lambda c: c * 1000), st.integers(1, 24).map(lambda g: g * GiB)
)
windows = st.tuples(st.integers(0, 48), st.integers(1, 12))  # start hour, length in hours
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), windows, needs),
        st.tuples(st.just("extend"), st.integers(0, 30), st.integers(-6, 12)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_no_sequence_of_accepted_changes_goes_over_capacity(ops: list) -> None:
    """Creates, extends (re-checked) and cancels: never over capacity at any instant."""
    live: list[Span | None] = []
    for op in ops:
        if op[0] == "create":
            (start, length), need = op[1], op[2]
            wanted = Span(at(start), at(start + length), need)
            if first_conflict([s for s in live if s], wanted, CAPACITY) is None:
                live.append(wanted)
        elif op[0] == "extend" and live:
            index = op[1] % len(live)
            span = live[index]
            if span is None:
                continue
            new_end = span.end + timedelta(hours=op[2])
            if new_end <= span.start:
                continue
            if new_end <= span.end:  # shortening always works
                live[index] = Span(span.start, new_end, span.need)
                continue
            others = [s for i, s in enumerate(live) if s and i != index]
            if first_conflict(others, Span(span.end, new_end, span.need), CAPACITY) is None:
                live[index] = Span(span.start, new_end, span.need)
        elif op[0] == "cancel" and live:
            live[op[1] % len(live)] = None
        assert not over_capacity_anywhere([s for s in live if s], CAPACITY)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(windows, needs), min_size=1, max_size=15), windows, needs)
def test_a_refused_booking_fits_once_enough_overlapping_bookings_are_cancelled(
    booked: list, window: tuple, need: Resources
) -> None:
    spans: list[Span] = []
    for (s, n), r in booked:  # what the policy accepted, in order
        span = Span(at(s), at(s + n), r)
        if first_conflict(spans, span, CAPACITY) is None:
            spans.append(span)
    wanted = Span(at(window[0]), at(window[0] + window[1]), need)
    if first_conflict(spans, wanted, CAPACITY) is None:
        return
    # cancel overlapping bookings one by one, biggest first, until it fits
    remaining = sorted(spans, key=lambda s: s.need, reverse=True)
    while first_conflict(remaining, wanted, CAPACITY) is not None:
        overlapping = [s for s in remaining if s.start < wanted.end and s.end > wanted.start]
        assert overlapping, "refused although nothing overlaps"
        remaining.remove(overlapping[0])
    assert not over_capacity_anywhere([*remaining, wanted], CAPACITY)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(windows, needs), max_size=20))
def test_usage_segments_agree_with_brute_force(booked: list) -> None:
    spans = [Span(at(s), at(s + n), r) for (s, n), r in booked]
    for a, b, used in usage_segments(spans):
        total = Resources()
        for s in spans:
            if s.start <= a < s.end:
                total = total + s.need
        assert total == used and a < b


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["small", "tiny", "large"]), windows, st.booleans()), max_size=12
    )
)
def test_the_ledger_never_overcommits_either(requests: list) -> None:
    """The same property through the real ledger and database (SQLite)."""
    now = T0 - timedelta(hours=1)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'r.sqlite'}")
        store.migrate()
        ledger = Ledger(store, settings_from_values(reservation_values()), clock=lambda: now)
        admin = Caller("admin", admin=True)
        made = []
        for size, (start, length), cancel in requests:
            try:
                made.append(
                    ledger.create(
                        admin, size=size, start=at(start), end=at(start + length), user="someone"
                    )
                )
            except Refused as refused:
                assert refused.status == 409
            if cancel and made:
                ledger.cancel(admin, made.pop(0).id)
        live = [b.span(timedelta(0)) for b in ledger.list(admin) if b.state != "cancelled"]
        assert not over_capacity_anywhere(live, ledger.settings.capacity)
        store.dispose()

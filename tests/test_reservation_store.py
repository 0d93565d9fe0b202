"""The booking ledger on SQLite and on PostgreSQL (every test runs on both).

A fixed clock stands in for time; the database, the lock and the policy are real.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aglais_hub.reservations.ledger import Caller, Ledger
from aglais_hub.reservations.models import Base
from aglais_hub.reservations.rules import Refused
from aglais_hub.reservations.settings import settings_from_values
from aglais_hub.reservations.store import Store
from tests.reservation_values import reservation_values

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
ALICE = Caller("alice", tier="standard")
BOB = Caller("bob", tier="power")
ADMIN = Caller("admin", admin=True, tier="standard")


@pytest.fixture
def ledger(any_db: str) -> Ledger:
    store = Store(any_db)
    store.migrate()
    yield Ledger(store, settings_from_values(reservation_values()), clock=lambda: NOW)
    store.dispose()


def book(ledger: Ledger, caller: Caller, start: timedelta, hours: float, size: str = "small"):
    return ledger.create(
        caller,
        size=size,
        start=NOW + start,
        end=NOW + start + hours * H,
        title="t",
        tier=caller.tier,
    )


def test_migrations_create_exactly_the_models(ledger: Ledger) -> None:
    with ledger.store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # the one difference allowed: PostgreSQL's GiST range index (migration 0002), which
    # the models cannot declare portably; it must exist there and nowhere else
    extra = [d for d in diff if d[0] == "remove_index" and d[1].name == "ix_bookings_period"]
    assert extra == ([diff[0]] if ledger.store.is_postgres else [])
    assert [d for d in diff if d not in extra] == []


def test_migrate_twice_keeps_bookings(ledger: Ledger) -> None:
    booking = book(ledger, ALICE, H, 2)
    ledger.store.migrate()
    assert ledger.get(ALICE, booking.id).start == NOW + H


def test_a_booking_reads_back_in_utc(ledger: Ledger) -> None:
    booking = book(ledger, ALICE, H, 2)
    got = ledger.get(ALICE, booking.id)
    assert (got.start, got.end, got.state, got.server_name) == (
        NOW + H,
        NOW + 3 * H,
        "pending",
        f"r{booking.id}",
    )
    assert got.limits["executors"] == 2
    assert got.as_json()["start"] == "2026-12-01T10:00:00Z"


def test_third_overlapping_small_is_refused_with_the_full_interval(ledger: Ledger) -> None:
    book(ledger, ALICE, 1 * H, 2)  # 10:00-12:00
    book(ledger, BOB, 2 * H, 2)  # 11:00-13:00
    with pytest.raises(Refused) as refused:
        book(ledger, ADMIN, 0 * H, 6)
    assert refused.value.status == 409
    assert "from 2026-12-01T11:00:00Z to 2026-12-01T12:00:00Z" in refused.value.message
    # 8 cores less two smalls of 3.1 (driver, executors and the auth proxy) each
    assert "at most 1.8 cores" in refused.value.message


def test_cancelling_frees_capacity(ledger: Ledger) -> None:
    first = book(ledger, ALICE, H, 2)
    book(ledger, BOB, H, 2)
    with pytest.raises(Refused):
        book(ledger, ADMIN, H, 1)
    ledger.cancel(ALICE, first.id)
    assert book(ledger, ADMIN, H, 1).state == "pending"


def test_extension_rechecks_capacity_and_shortening_always_works(ledger: Ledger) -> None:
    mine = book(ledger, ALICE, H, 1)  # 10-11
    book(ledger, BOB, 2 * H, 2)  # 11-13
    book(ledger, ADMIN, 2 * H, 2)  # 11-13: full from 11
    with pytest.raises(Refused) as refused:
        ledger.change_end(ALICE, mine.id, NOW + 3 * H, "standard")
    assert refused.value.status == 409
    assert ledger.change_end(ALICE, mine.id, NOW + 1.5 * H, "standard").end == NOW + 1.5 * H
    assert ledger.get(ALICE, mine.id).end == NOW + 1.5 * H


def test_others_bookings_are_404_for_users_and_visible_to_admins(ledger: Ledger) -> None:
    mine = book(ledger, ALICE, H, 1)
    for action in (
        lambda: ledger.get(BOB, mine.id),
        lambda: ledger.cancel(BOB, mine.id),
        lambda: ledger.change_end(BOB, mine.id, NOW + 2 * H, "power"),
    ):
        with pytest.raises(Refused) as refused:
            action()
        assert refused.value.status == 404
    assert ledger.get(ADMIN, mine.id).user == "alice"
    assert [b.id for b in ledger.list(BOB)] == []
    assert [b.id for b in ledger.list(ADMIN, user="alice")] == [mine.id]


def test_tier_rules(ledger: Ledger) -> None:
    with pytest.raises(Refused, match="needs tier 'Power'") as refused:
        book(ledger, ALICE, H, 1, size="large")
    assert refused.value.status == 403
    with pytest.raises(Refused, match="cannot book") as refused:
        book(ledger, Caller("carol", tier="basic"), H, 1)
    assert refused.value.status == 403
    with pytest.raises(Refused, match="longer than your tier") as refused:
        book(ledger, ALICE, H, 9)
    assert refused.value.status == 422
    with pytest.raises(Refused, match="days ahead"):
        book(ledger, ALICE, timedelta(days=20), 1)
    book(ledger, ALICE, H, 1, size="tiny")
    book(ledger, ALICE, 2 * H, 1, size="tiny")
    with pytest.raises(Refused, match="allows 2"):
        book(ledger, ALICE, 3 * H, 1, size="tiny")


def test_weekly_hours(ledger: Ledger) -> None:
    carol = Caller("carol", tier="standard")
    book(ledger, carol, H, 6, size="tiny")
    with pytest.raises(Refused, match="8 h per week; you have 6 h booked") as refused:
        book(ledger, carol, 8 * H, 3, size="tiny")
    assert refused.value.status == 403


def test_admin_books_for_a_user_past_the_tier_rules(ledger: Ledger) -> None:
    booking = ledger.create(ADMIN, size="large", start=NOW + H, end=NOW + 2 * H, user="alice")
    assert (booking.user, booking.created_by) == ("alice", "admin")
    with pytest.raises(Refused) as refused:
        ledger.create(ALICE, size="small", start=NOW + H, end=NOW + 2 * H, user="bob")
    assert refused.value.status == 403


def test_time_rules(ledger: Ledger) -> None:
    with pytest.raises(Refused, match="must be after") as refused:
        book(ledger, ALICE, H, 0)
    assert refused.value.status == 422
    with pytest.raises(Refused, match="in the past"):
        book(ledger, ALICE, -H, 2)
    with pytest.raises(Refused, match="no size 'huge'") as refused:
        book(ledger, ALICE, H, 1, size="huge")
    assert refused.value.status == 422


def test_concurrent_creates_from_two_service_instances_never_overcommit(any_db: str) -> None:
    """Two ledgers (as two service replicas would be) on one database, 24 threads."""
    values = reservation_values()
    stores = [Store(any_db), Store(any_db)]
    stores[0].migrate()
    ledgers = [Ledger(s, settings_from_values(values), clock=lambda: NOW) for s in stores]
    outcomes: list[int] = []
    barrier = threading.Barrier(24)

    def one(i: int) -> None:
        barrier.wait()
        try:
            book(ledgers[i % 2], Caller(f"u{i}", tier="power"), H, 1 + (i % 3))
            outcomes.append(201)
        except Refused as refused:
            outcomes.append(refused.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(outcomes)) == [201, 409]
    held = ledgers[0].list(ADMIN)
    assert len(held) == outcomes.count(201) == 2  # 8 cores hold two smalls of 3
    for s in stores:
        s.dispose()


def test_scheduler_transitions_at_each_moment() -> None:
    """What is due for a booking 10:00-11:00 (warn 15 min before, grace 5 min)."""
    from aglais_hub.reservations.models import Booking
    from aglais_hub.reservations.scheduler import transitions

    def due(state: str, at: datetime, warned: bool = False, stopped: bool = False) -> list[str]:
        booking = Booking(
            state=state,
            start=NOW + H,
            end=NOW + 2 * H,
            warned_at=NOW if warned else None,
            stopped_at=NOW if stopped else None,
        )
        return transitions(booking, at, timedelta(minutes=15), timedelta(minutes=5))

    assert due("pending", NOW) == []
    assert due("pending", NOW + H) == ["activate"]
    assert due("active", NOW + 1.5 * H) == []
    assert due("active", NOW + 1.8 * H) == ["warn"]
    assert due("active", NOW + 1.8 * H, warned=True) == []
    assert due("active", NOW + 2 * H, warned=True) == ["complete"]
    assert due("completed", NOW + 2 * H + timedelta(minutes=4)) == []
    assert due("completed", NOW + 2 * H + timedelta(minutes=5)) == ["stop"]
    assert due("completed", NOW + 3 * H, stopped=True) == []
    # a service that was down for the whole booking catches up in one tick
    assert due("pending", NOW + 3 * H) == ["complete", "stop"]
    assert due("cancelled", NOW) == ["stop"]


def test_the_gate_gauges_and_scheduler_read_and_mark_through_the_ledger(ledger: Ledger) -> None:
    """The queries the service and the scheduler make (none opens a session of its own)."""
    running = book(ledger, ALICE, 0 * H, 1, size="tiny")  # 09:00-10:00: active now
    later = book(ledger, BOB, 2 * H, 1)  # 11:00-12:00: pending
    gone = ledger.cancel(BOB, book(ledger, BOB, 4 * H, 1).id)
    assert ledger.booking(later.id).user == "bob" and ledger.booking(10**6) is None
    assert ledger.held_resources(NOW) == [running.need]
    assert ledger.held_resources(NOW + 2 * H) == [later.need]  # pending counts once started
    assert ledger.counts_by_state() == {"active": 1, "pending": 1, "cancelled": 1}
    assert sorted(b.id for b in ledger.due(NOW)) == [running.id, gone.id]
    assert [b.id for b in ledger.active()] == [running.id]
    later_clock = Ledger(ledger.store, ledger.settings, clock=lambda: NOW + H)
    done = later_clock.record(running.id, state="completed")
    assert (done.state, done.updated_at, done.stopped_at) == ("completed", NOW + H, None)
    later_clock.mark_stopped(gone.id)
    stopped = ledger.booking(gone.id)
    assert (stopped.stopped_at, stopped.updated_at) == (NOW + H, NOW)  # only stopped_at
    assert [b.id for b in ledger.due(NOW + H)] == [running.id]  # completed, not yet stopped
    assert ledger.active() == []


def test_an_idempotency_key_books_once(ledger: Ledger) -> None:
    first = ledger.create(
        ALICE,
        size="small",
        start=NOW + H,
        end=NOW + 2 * H,
        title="t",
        tier="standard",
        idempotency_key="k-1",
    )
    again = ledger.create(
        ALICE,
        size="small",
        start=NOW + H,
        end=NOW + 2 * H,
        title=" t ",
        tier="standard",
        idempotency_key="k-1",
    )
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    with pytest.raises(Refused, match="already used for a different request") as refused:
        ledger.create(
            ALICE,
            size="small",
            start=NOW + H,
            end=NOW + 3 * H,
            tier="standard",
            idempotency_key="k-1",
        )
    assert refused.value.status == 422
    theirs = ledger.create(
        BOB,
        size="small",
        start=NOW + H,
        end=NOW + 2 * H,
        title="t",
        tier="power",
        idempotency_key="k-1",
    )
    assert theirs.id != first.id  # keys are per caller
    assert len(ledger.list(ADMIN)) == 2


def test_a_retry_with_its_key_is_answered_after_the_start_has_passed(ledger: Ledger) -> None:
    made = ledger.create(
        ALICE, size="tiny", start=NOW, end=NOW + H, tier="standard", idempotency_key="late"
    )
    later = Ledger(ledger.store, ledger.settings, clock=lambda: NOW + 2 * H)
    again = later.create(
        ALICE, size="tiny", start=NOW, end=NOW + H, tier="standard", idempotency_key="late"
    )
    assert again.id == made.id and again.replayed


@pytest.mark.parametrize("key", ["", "x" * 129, "with space", "é"])
def test_idempotency_keys_are_visible_ascii(ledger: Ledger, key: str) -> None:
    with pytest.raises(Refused, match="Idempotency-Key") as refused:
        ledger.create(
            ALICE, size="tiny", start=NOW + H, end=NOW + 2 * H, tier="standard", idempotency_key=key
        )
    assert refused.value.status == 422


def test_one_longest_booking_for_everyone(ledger: Ledger) -> None:
    for caller, user in ((ADMIN, "alice"), (ADMIN, None)):
        with pytest.raises(Refused, match="longer than any booking may last") as refused:
            ledger.create(caller, size="tiny", start=NOW + H, end=NOW + H + 10_000 * H, user=user)
        assert refused.value.status == 422
    longest = ledger.create(ADMIN, size="tiny", start=NOW + H, end=NOW + 745 * H, user="alice")
    with pytest.raises(Refused, match="longer than any booking may last"):
        ledger.change_end(ADMIN, longest.id, NOW + 746 * H)


@pytest.mark.parametrize(
    "title, words",
    [
        ("a\x00b", "NUL"),
        ("\u202eabc", "U+202E"),
        ("a\nb", "U+000A"),
        ("a\u2067b", "U+2067"),
        ("\ud800", "lone surrogate"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_titles_are_one_line_of_text(ledger: Ledger, title: str, words: str) -> None:
    with pytest.raises(Refused, match=re.escape(words)) as refused:
        ledger.create(
            ALICE, size="tiny", start=NOW + H, end=NOW + 2 * H, title=title, tier="standard"
        )
    assert refused.value.status == 422
    assert ledger.list(ADMIN) == []


def test_titles_are_stored_as_the_hub_shows_them(ledger: Ledger) -> None:
    made = ledger.create(
        ALICE,
        size="tiny",
        start=NOW + H,
        end=NOW + 2 * H,
        tier="standard",
        title="  Gaia   DR3\u200b  ",
    )
    assert ledger.get(ALICE, made.id).title == "Gaia DR3"


@pytest.mark.parametrize("number", [0, -1, 2**31, 2**63])
def test_ids_no_booking_can_have_are_404(ledger: Ledger, number: int) -> None:
    for action in (
        lambda: ledger.get(ADMIN, number),
        lambda: ledger.cancel(ADMIN, number),
        lambda: ledger.change_end(ADMIN, number, NOW + 2 * H),
    ):
        with pytest.raises(Refused) as refused:
            action()
        assert refused.value.status == 404


def test_a_dropped_connection_reruns_the_whole_transaction_once(ledger: Ledger) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    store, runs = ledger.store, []

    def work(session):  # noqa: ANN202
        runs.append(1)
        if len(runs) == 1:  # the database drops this connection mid-transaction
            if store.is_postgres:
                session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            raise DBAPIError("SELECT 1", {}, ConnectionError("gone"), connection_invalidated=True)
        return session.execute(text("SELECT count(*) FROM bookings")).scalar()

    assert store.run(work, booking=True) == 0 and len(runs) == 2
    runs.clear()

    def always(session):  # noqa: ANN202
        runs.append(1)
        raise DBAPIError("SELECT 1", {}, ConnectionError("gone"), connection_invalidated=True)

    with pytest.raises(DBAPIError):  # a second drop is the caller's (the service: 503)
        store.run(always)
    assert len(runs) == 2

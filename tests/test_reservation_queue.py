"""The spawn queue's decisions (pure): first come first served, one place per user,
abandoned places freed, and sizes that could never fit refused at once."""

from __future__ import annotations

import pytest

from aglais_hub.offering import Resources
from aglais_hub.reservations.gate import (
    ABANDONED_AFTER,
    SpawnQueue,
    alias_refusal,
    booked_server_name,
    booking_id,
    imitated_booking,
)
from aglais_hub.reservations.rules import ID_MAX

SMALL = Resources(3000, 4 * 2**30)
ROOM_FOR_ONE = Resources(3000, 8 * 2**30)
FULL = Resources(0, 0)
CAPACITY = Resources(8000, 32 * 2**30)


def test_a_spawn_that_fits_an_empty_queue_goes_through() -> None:
    assert SpawnQueue().decide(("ann", ""), SMALL, ROOM_FOR_ONE, now=0).allowed


def test_first_come_first_served_even_when_a_later_one_would_fit() -> None:
    queue = SpawnQueue()
    assert queue.decide(("ann", ""), SMALL, FULL, now=0).position == 1
    assert queue.decide(("ben", ""), SMALL, FULL, now=1).position == 2
    # room for one: ben asks first, but ann is ahead of him
    later = queue.decide(("ben", ""), SMALL, ROOM_FOR_ONE, now=2)
    assert not later.allowed and later.position == 2
    assert queue.decide(("ann", ""), SMALL, ROOM_FOR_ONE, now=3).allowed
    assert queue.decide(("ben", ""), SMALL, ROOM_FOR_ONE, now=4).allowed
    assert not queue.entries


def test_one_place_per_user() -> None:
    queue = SpawnQueue()
    queue.decide(("ann", "a"), SMALL, FULL, now=0)
    second = queue.decide(("ann", "b"), SMALL, FULL, now=1)
    assert not second.allowed and second.position is None
    assert "already have a spawn waiting" in second.reason and "(a)" in second.reason


def test_abandoned_and_withdrawn_places_are_freed() -> None:
    queue = SpawnQueue()
    queue.decide(("ann", ""), SMALL, FULL, now=0)
    queue.decide(("ben", ""), SMALL, FULL, now=0)
    queue.decide(("ben", ""), SMALL, FULL, now=ABANDONED_AFTER)  # ben still polls
    assert queue.decide(("ben", ""), SMALL, FULL, now=ABANDONED_AFTER + 1).position == 1
    queue.withdraw(("ben", ""))
    assert not queue.entries


def test_a_size_bigger_than_the_platform_is_refused_at_once() -> None:
    queue = SpawnQueue()
    huge = Resources(9000, 2**30)
    answer = queue.decide(("ann", ""), huge, FULL, now=0, capacity=CAPACITY)
    assert not answer.allowed and answer.position is None
    assert "more than the 8 cores and 32 GiB the whole platform has" in answer.reason
    assert not queue.entries


def test_grants_count_until_the_hubs_list_shows_the_server() -> None:
    queue = SpawnQueue()
    queue.decide(("ann", ""), SMALL, ROOM_FOR_ONE, now=10)
    # a server list read before the grant does not show ann yet: her grant still counts
    assert queue.recent_grants(11, listed=set(), listed_at=9) == SMALL
    # a list read after the grant that shows her: the list counts her, not the grant
    assert queue.recent_grants(12, listed={("ann", "")}, listed_at=11) == Resources()
    # a list read after the grant without her: she is gone (the spawn failed or stopped)
    assert queue.recent_grants(13, listed=set(), listed_at=12) == Resources()


def test_booked_server_names() -> None:
    assert booking_id("r12") == 12 and booked_server_name(12) == "r12"
    assert booking_id(f"r{ID_MAX}") == ID_MAX
    assert booking_id("r") is None and booking_id("run1") is None and booking_id("") is None
    assert alias_refusal("r12") is None and alias_refusal("work") is None
    assert alias_refusal("run1") is None and alias_refusal("r-7") is None


# r + 7 in Arabic-Indic, full-width and Devanagari digits, a leading zero, spaces, case
ALIASES = [
    "r07",
    "r007",
    "r\u0667",
    "r\uff17",
    "r\uff10\uff17",
    "r\u096d",
    "r7 ",
    " r7",
    "r 7",
    "r7\n",
    "R7",
]


@pytest.mark.parametrize("name", ALIASES)
def test_names_imitating_a_booking_are_no_bookings_server(name: str) -> None:
    """Only ``r7`` is booking 7's server; every look-alike is refused, pointing at r7."""
    assert booking_id(name) is None
    assert imitated_booking(name) == 7
    refusal = alias_refusal(name)
    assert refusal and "belong to bookings" in refusal and "written exactly r7" in refusal


@pytest.mark.parametrize("name", ["r0", "r00", f"r{ID_MAX + 1}", "r" + "9" * 40, "r" + "9" * 5000])
def test_r_numbers_no_booking_can_have_are_refused(name: str) -> None:
    """Zero and ids beyond the database's INTEGER: no booking, and not a free name either."""
    assert booking_id(name) is None
    refusal = alias_refusal(name)
    assert refusal and "names no booking there can be" in refusal and len(refusal) < 300

"""Booking rules: what a request must satisfy before capacity is even looked at.

Pure functions. Each raises `Refused` with the HTTP status and a message for the
user: 422 for requests that cannot make sense (end before start, in the past,
longer than the tier's longest booking), 403 for what the user's tier forbids.
Admins booking on someone's behalf skip the tier rules, never the time rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aglais_hub.quotas import Tier

from .policy import iso

PAST_SLACK = timedelta(minutes=1)  # a form filled in at 10:00 and sent at 10:00:40 is fine
LIVE_STATES = ("pending", "active")


class Refused(Exception):
    """A request the service turns down; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Held:
    """One of the user's existing bookings, as the rules see it."""

    start: datetime
    end: datetime
    state: str


def hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _fmt_hours(value: float) -> str:
    return f"{value:g} h" if value == int(value) else f"{value:.1f} h"


def check_window(start: datetime, end: datetime, now: datetime) -> None:
    """End after start; start not in the past (422)."""
    if end <= start:
        raise Refused(422, f"The end ({iso(end)}) must be after the start ({iso(start)}).")
    if start < now - PAST_SLACK:
        raise Refused(422, f"The start ({iso(start)}) is in the past; it is now {iso(now)}.")


def week_of(when: datetime) -> tuple[datetime, datetime]:
    """The ISO week (Monday 00:00 UTC to the next Monday) holding ``when``."""
    monday = (when - timedelta(days=when.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return monday, monday + timedelta(days=7)


def booked_hours_in_week(mine: Iterable[Held], week: tuple[datetime, datetime]) -> float:
    """Hours of live or finished (not cancelled) bookings that fall inside ``week``."""
    total = timedelta(0)
    for held in mine:
        if held.state == "cancelled":
            continue
        overlap = min(held.end, week[1]) - max(held.start, week[0])
        if overlap > timedelta(0):
            total += overlap
    return hours(total)


def check_tier(tier: Tier, rules: Mapping, start: datetime, end: datetime, now: datetime,
               mine: Iterable[Held], *, new: bool = True) -> None:  # fmt: skip
    """The tier's booking rules, for a new booking or (``new=False``) a changed end.

    ``mine`` are the user's other bookings (for an extension: without the one extended).
    """
    mine = list(mine)
    name = tier.display_name
    if tier.booking_hours <= 0:
        raise Refused(403, f"Your tier '{name}' cannot book clusters; ask an administrator.")
    longest = rules["bookingMaxHours"]
    if hours(end - start) > longest:
        raise Refused(
            422,
            f"A booking of {_fmt_hours(hours(end - start))} is longer than your tier '{name}' "
            f"allows ({_fmt_hours(longest)} at most).",
        )
    ahead = timedelta(days=rules["bookingAheadDays"])
    if new and start > now + ahead:
        raise Refused(
            403,
            f"Your tier '{name}' may book at most {rules['bookingAheadDays']:g} days ahead; "
            f"the start {iso(start)} is later than {iso(now + ahead)}.",
        )
    if new:
        live = sum(1 for held in mine if held.state in LIVE_STATES and held.end > now)
        if live >= rules["activeBookings"]:
            raise Refused(
                403,
                f"You already hold {live} upcoming or running booking(s); your tier '{name}' "
                f"allows {rules['activeBookings']}. Cancel one, or wait until one ends.",
            )
    week = week_of(start)
    already = booked_hours_in_week(mine, week)
    wanted = hours(min(end, week[1]) - start)
    if already + wanted > tier.booking_hours + 1e-9:
        raise Refused(
            403,
            f"Your tier '{name}' may book {_fmt_hours(tier.booking_hours)} per week; you have "
            f"{_fmt_hours(already)} booked in the week of {week[0].date().isoformat()}, "
            f"and this booking needs {_fmt_hours(wanted)} more.",
        )

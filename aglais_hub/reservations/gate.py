"""The spawn gate's decisions: booked servers and the FIFO queue for shared capacity.

Pure apart from the queue's own memory. Shared capacity is the platform's
capacity minus the bookings active now minus the unbooked servers running or
starting. A spawn that does not fit, or arrives while others wait, joins the
queue; the head of the queue starts as soon as it fits. One queued spawn per
user, so nobody can take several places in the line.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .policy import Resources, iso

BOOKED_SERVER = re.compile(r"^r(\d+)$")
ABANDONED_AFTER = 20.0  # seconds without a poll: the spawner gave up or the hub restarted
GRANT_MEMORY = 60.0  # seconds a grant counts before the hub's server list shows it

Key = tuple[str, str]  # (user, server name)


def booking_id(server_name: str) -> int | None:
    """The booking a server name belongs to (``r12`` → 12), else None."""
    match = BOOKED_SERVER.match(server_name or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Decision:
    """What the spawner is told."""

    allowed: bool
    reason: str
    limits: dict | None = None
    position: int | None = None
    booking: int | None = None
    title: str = ""  # the booking's title: the server's display name
    waited: float | None = None  # seconds an unbooked spawn queued before it was let through

    def as_json(self) -> dict:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "limits": self.limits,
            "queued": self.position is not None,
            "position": self.position,
            "booking": self.booking,
            "title": self.title,
        }


def booked_decision(user: str, server_name: str, booking: object | None, now: datetime) -> Decision:
    """May ``user`` start the booking's server ``r<id>`` now? ``booking`` is a models.Booking."""
    number = booking_id(server_name)
    if booking is None or booking.user != user:
        return Decision(
            False,
            f"There is no booking {number} of yours: server names r<number> "
            "belong to bookings. Book a cluster on the reservations page, "
            "or choose another server name.",
            booking=number,
        )
    title = f"'{booking.title}'" if booking.title else str(booking.id)
    if booking.state == "cancelled":
        return Decision(False, f"Your booking {title} was cancelled.", booking=booking.id)
    if now < booking.start:
        wait = booking.start - now
        return Decision(
            False,
            f"Your booking {title} starts at {iso(booking.start)} "
            f"(in {_duration(wait)}); start its server then.",
            booking=booking.id,
        )
    if now >= booking.end or booking.state == "completed":
        return Decision(
            False, f"Your booking {title} ended at {iso(booking.end)}.", booking=booking.id
        )
    return Decision(
        True,
        f"Booking {title} is active until {iso(booking.end)}.",
        limits=dict(booking.limits),
        booking=booking.id,
        title=booking.title,
    )


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@dataclass
class Waiting:
    user: str
    server: str
    need: Resources
    since: float
    seen: float


@dataclass
class SpawnQueue:
    """Unbooked spawns waiting for shared capacity, first come first served."""

    entries: OrderedDict[Key, Waiting] = field(default_factory=OrderedDict)
    grants: dict[Key, tuple[Resources, float]] = field(default_factory=dict)

    def position(self, key: Key) -> int | None:
        for index, queued in enumerate(self.entries):
            if queued == key:
                return index + 1
        return None

    def withdraw(self, key: Key) -> None:
        self.entries.pop(key, None)

    def forget_abandoned(self, now: float) -> None:
        for key in [k for k, w in self.entries.items() if now - w.seen > ABANDONED_AFTER]:
            del self.entries[key]

    def recent_grants(self, now: float, listed: set[Key], listed_at: float) -> Resources:
        """What granted spawns hold that the hub's (older) server list may not show yet."""
        total = Resources()
        for key, (need, granted_at) in list(self.grants.items()):
            if now - granted_at > GRANT_MEMORY or (listed_at > granted_at and key not in listed):
                del self.grants[key]
            elif key not in listed:
                total = total + need
        return total

    def decide(self, key: Key, need: Resources, free: Resources, now: float,
               capacity: Resources | None = None) -> Decision:  # fmt: skip
        """Let the spawn through, or keep/put it in the line and say where it stands.

        A spawn bigger than the whole ``capacity`` is refused at once: it would wait forever.
        """
        self.forget_abandoned(now)
        if capacity is not None and not need.fits_in(capacity):
            self.entries.pop(key, None)
            return Decision(False, f"This size needs {need.describe()}, more than the "
                                   f"{capacity.describe()} the whole platform has. Choose a "
                                   "smaller size.")  # fmt: skip
        if key in self.entries:
            self.entries[key].seen = now
        else:
            mine = [w for k, w in self.entries.items() if w.user == key[0]]
            if not self.entries and need.fits_in(free):
                return self._grant(key, need, now, waited=0.0)
            if mine:
                other = mine[0].server or "your default server"
                return Decision(
                    False,
                    f"You already have a spawn waiting for capacity ({other}); "
                    "one queued spawn per user.",
                )
            self.entries[key] = Waiting(key[0], key[1], need, now, now)
        position = self.position(key)
        if position == 1 and need.fits_in(free):
            waiting = self.entries.pop(key)
            return self._grant(key, need, now, waited=now - waiting.since)
        return Decision(
            False,
            f"The shared cluster is full: position {position} in queue. Your server starts "
            "as soon as capacity frees up.",
            position=position,
        )

    def _grant(self, key: Key, need: Resources, now: float, waited: float) -> Decision:
        self.grants[key] = (need, now)
        return Decision(True, "Shared capacity is available.", waited=waited)

    def queued_keys(self) -> set[Key]:
        return set(self.entries)


def shared_free(
    capacity: Resources, active_bookings: Iterable[Resources], unbooked_running: Iterable[Resources]
) -> Resources:
    """Capacity left for unbooked servers right now."""
    free = capacity
    for need in active_bookings:
        free = free - need
    for need in unbooked_running:
        free = free - need
    return free

"""The spawn gate's decisions: booked servers and the FIFO queue for shared capacity.

Pure apart from the queue's own memory. Shared capacity is the platform's
capacity minus the bookings active now minus the unbooked servers running or
starting. A spawn that does not fit, or arrives while others wait, joins the
queue; the head of the queue starts as soon as it fits. One queued spawn per
user, so nobody can take several places in the line.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aglais_hub.offering import Resources

from .policy import iso
from .rules import ID_MAX, NAME_MAX, Refused

# A booking's server is named r<id>: ASCII digits, no leading zero, and an id the
# database's INTEGER column can hold. Nothing else is a booking's server.
BOOKED_SERVER = re.compile(r"r([1-9][0-9]{0,9})", re.ASCII)
# Names that merely look like one (r07, r0, r٧, r７, "r7 ", R7): \d is Unicode on purpose
LOOKS_BOOKED = re.compile(r"r\s*(\d+)")
ABANDONED_AFTER = 20.0  # seconds without a poll: the spawner gave up or the hub restarted
GRANT_MEMORY = 60.0  # seconds a grant counts before the hub's server list shows it

Key = tuple[str, str]  # (user, server name)


def booking_id(server_name: object) -> int | None:
    """The booking a server name belongs to (``r12`` → 12), else None.

    The one rule for "is this a booking's server": only the canonical name counts
    (``r07``, ``r٧``, ``r7 `` and ``r0`` are not booking 7's or any booking's server;
    see `alias_refusal` for what happens to them).
    """
    if not isinstance(server_name, str):
        return None
    match = BOOKED_SERVER.fullmatch(server_name)
    if match is None:
        return None
    number = int(match.group(1))
    return number if number <= ID_MAX else None


def booked_server_name(number: int) -> str:
    """The server name of booking ``number`` (the inverse of `booking_id`)."""
    return f"r{int(number)}"


def imitated_booking(server_name: object) -> int | None:
    """The booking number a name stands for when read loosely (``r07``, ``r٧``, ``r７``,
    ``'R7 '`` → 7; ``r0`` → 0), canonical or not; None for names that are not r<number>.
    Numbers beyond the database's range come back as ``ID_MAX + 1``."""
    if not isinstance(server_name, str):
        return None
    folded = unicodedata.normalize("NFKC", server_name).strip().lower()
    match = LOOKS_BOOKED.fullmatch(folded)
    if match is None:
        return None
    digits = match.group(1)
    return int(digits) if len(digits) <= 12 else ID_MAX + 1


def alias_refusal(server_name: object) -> str | None:
    """Why a name that imitates a booking's server may not start; None for every other name.

    Such names are neither a booking's server (only `booking_id`'s canonical name is)
    nor a name users may choose for an unbooked server: they would let one booking run
    under several names, or confuse people reading the home page.
    """
    if booking_id(server_name) is not None:
        return None
    number = imitated_booking(server_name)
    if number is None:
        return None
    shown = server_name[:40]
    if 0 < number <= ID_MAX:
        return (
            f"Server names r<number> belong to bookings and are written exactly r{number}: "
            f"{shown!r} is not the server of booking {number}. Start r{number} if booking "
            f"{number} is yours, or choose another server name."
        )
    return (
        f"Server names r<number> belong to bookings, and {shown!r} names no booking there "
        "can be. Choose another server name."
    )


SPAWN_FIELDS = ("user", "server_name", "profile", "tier", "withdraw")


@dataclass(frozen=True)
class SpawnRequest:
    """A spawn-check body that passed `spawn_request`."""

    user: str
    server_name: str
    profile: str | None
    tier: str | None
    withdraw: bool


def spawn_request(data: object, profiles: Iterable[str]) -> SpawnRequest:
    """Check a spawn-check body; `Refused` (422) names the first bad field.

    ``profiles`` are the profile names a spawn may ask for (the sizes and ``tier``).
    Every field has one type: a list or an object anywhere is refused here rather than
    failing later (a 500 would read as "service unreachable" to an old spawner).
    """
    if not isinstance(data, dict):
        raise Refused(422, "The request body must be a JSON object.")
    unknown = sorted(str(k) for k in data if k not in SPAWN_FIELDS)
    if unknown:
        raise Refused(
            422,
            f"Unknown field(s): {', '.join(unknown)[:200]}. Send "
            '{"user", "server_name", "profile", "tier", "withdraw"}.',
        )

    def text(name: str, value: object, empty: bool) -> str | None:
        if value is None and name in ("profile", "tier"):
            return None
        if not isinstance(value, str):
            raise Refused(422, f"'{name}' must be a string.")
        if not value and not empty:
            raise Refused(422, f"'{name}' must not be empty.")
        if len(value) > NAME_MAX:  # the hub's own column size for user and server names
            raise Refused(422, f"'{name}' is longer than {NAME_MAX} characters.")
        return value

    user = text("user", data.get("user"), empty=False)
    server = text("server_name", data.get("server_name", ""), empty=True)
    profile = text("profile", data.get("profile"), empty=True)
    tier = text("tier", data.get("tier"), empty=True)
    withdraw = data.get("withdraw", False)
    if not isinstance(withdraw, bool):
        raise Refused(422, "'withdraw' must be true or false.")
    offered = set(profiles)
    if profile and profile not in offered:
        raise Refused(422, f"'profile' must name one of the sizes: {', '.join(sorted(offered))}.")
    return SpawnRequest(user, server, profile or None, tier or None, withdraw)


@dataclass(frozen=True)
class Decision:
    """What the spawner is told."""

    allowed: bool
    reason: str
    limits: dict | None = None
    position: int | None = None
    booking: int | None = None
    title: str = ""  # the booking's title: the server's display name
    size: str | None = None  # the booked size's name: the server runs its flavour
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
            "size": self.size,
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
    title = booking.label
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
        size=booking.size,
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

    def decide(
        self,
        key: Key,
        need: Resources,
        free: Resources,
        now: float,
        capacity: Resources | None = None,
    ) -> Decision:
        """Let the spawn through, or keep/put it in the line and say where it stands.

        A spawn bigger than the whole ``capacity`` is refused at once: it would wait forever.
        """
        self.forget_abandoned(now)
        if capacity is not None and not need.fits_in(capacity):
            self.entries.pop(key, None)
            return Decision(
                False,
                f"This size needs {need.describe()}, more than the "
                f"{capacity.describe()} the whole platform has. Choose a "
                "smaller size.",
            )
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

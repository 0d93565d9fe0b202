"""Booking rules: what a request must satisfy before capacity is even looked at.

Pure functions. Each raises `Refused` with the HTTP status and a message for the
user: 422 for requests that cannot make sense (end before start, in the past,
longer than the tier's longest booking), 403 for what the user's tier forbids.
Admins booking on someone's behalf skip the tier rules, never the time rules.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aglais_hub.offering import Tier
from aglais_hub.text import display_text

from .policy import iso

PAST_SLACK = timedelta(minutes=1)  # a form filled in at 10:00 and sent at 10:00:40 is fine
LIVE_STATES = ("pending", "active")
# One longest booking for everyone: users, and admins booking on someone's behalf,
# through the API and the page alike (a tier may allow less: bookingMaxHours).
BOOKING_MAX_HOURS = 24 * 31
TITLE_MAX = 200
NAME_MAX = 255  # a hub user name (JupyterHub's column is 255 wide)
ID_MAX = 2**31 - 1  # bookings.id is a 32-bit integer; larger ids name no booking
YEARS = (2000, 2100)  # times outside these years are refused (no date arithmetic overflows)
# the bidi marks, embeddings, overrides and isolates (what makes "txt.exe" read "exe.txt")
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_RFC3339 = re.compile(
    r"(\d{4})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)


class Refused(Exception):
    """A request the service turns down; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _shown(value: str, limit: int = 40) -> str:
    """A user's value quoted for a message, cut short."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def parse_time(value: object, field: str) -> datetime:
    """An RFC 3339 time with a zone (``2026-12-01T10:00:00Z``) in the years 2000–2100 (422)."""
    if not isinstance(value, str) or not value:
        raise Refused(422, f"'{field}' must be an ISO 8601 time such as 2026-12-01T10:00:00Z.")
    text = value.upper()
    match = _RFC3339.fullmatch(text) if len(text) <= 40 else None
    if match is None:
        raise Refused(422, f"'{field}' is not an ISO 8601 time: {_shown(value)}.")
    if match.group(2) is None:
        raise Refused(422, f"'{field}' needs a time zone (end it with Z for UTC): {_shown(value)}.")
    year = int(match.group(1))
    if not YEARS[0] <= year <= YEARS[1]:
        raise Refused(
            422, f"'{field}' must fall in the years {YEARS[0]} to {YEARS[1]}: {_shown(value)}."
        )
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(422, f"'{field}' is not an ISO 8601 time: {_shown(value)}.") from None


def check_year(when: datetime, field: str) -> datetime:
    """``when`` (from a form) in the years 2000–2100, else 422."""
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise Refused(422, f"'{field}' must fall in the years {YEARS[0]} to {YEARS[1]}.")
    return when


def parse_id(text: object) -> int | None:
    """A booking id from a path or a form: ASCII digits in 1..2^31-1, else None (a 404)."""
    if not isinstance(text, str) or not (0 < len(text) <= 10 and text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 1 <= number <= ID_MAX else None


def _problem_character(text: str) -> str | None:
    """What in ``text`` may not be in a title or a name, named for the user (None: nothing)."""
    for char in text:
        code = f"U+{ord(char):04X}"
        category = unicodedata.category(char)
        if char == "\x00":
            return "a NUL character (U+0000)"
        if category == "Cs":
            return f"a lone surrogate ({code}), which is not text"
        if category == "Cc":
            return f"a control character ({code}); it must be one line of text"
        if category in ("Zl", "Zp"):
            return f"a line break ({code}); it must be one line of text"
        if char in BIDI_CONTROLS:
            return f"a bidirectional control character ({code}), which can disguise text"
    return None


def check_title(value: object) -> str:
    """A booking title, as the hub's server display name will show it (422 for what cannot be).

    At most 200 characters, one line: no NUL, control characters, line breaks, bidi
    overrides, embeddings or isolates, or lone surrogates. What is left goes through
    `display_text` (NFC, runs of spaces made one, invisible characters dropped, trimmed).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(422, "'title' must be a string.")
    if len(value) > TITLE_MAX:
        raise Refused(422, f"The title is longer than {TITLE_MAX} characters ({len(value)}).")
    problem = _problem_character(value)
    if problem:
        raise Refused(422, f"The title contains {problem}.")
    return display_text(value, TITLE_MAX)


def check_user_name(value: object, field: str = "user") -> str:
    """A hub user name as a request names one: 1–255 characters, no control characters."""
    if not isinstance(value, str) or not value:
        raise Refused(422, f"'{field}' must be a hub user name (a non-empty string).")
    if len(value) > NAME_MAX:
        raise Refused(422, f"'{field}' is longer than {NAME_MAX} characters.")
    problem = _problem_character(value)
    if problem:
        raise Refused(422, f"'{field}' contains {problem}.")
    return value


IDEMPOTENCY_KEY_MAX = 128


def check_idempotency_key(value: object) -> str:
    """An ``Idempotency-Key``: 1–128 visible ASCII characters (a UUID is typical)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= IDEMPOTENCY_KEY_MAX
        or not all("!" <= char <= "~" for char in value)
    ):
        raise Refused(
            422,
            f"An Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII "
            "characters (no spaces), such as a UUID.",
        )
    return value


def check_length(start: datetime, end: datetime) -> None:
    """No booking, whoever makes it, lasts longer than `BOOKING_MAX_HOURS` (422)."""
    if hours(end - start) > BOOKING_MAX_HOURS:
        raise Refused(
            422,
            f"A booking of {_fmt_hours(hours(end - start))} is longer than any booking may "
            f"last ({BOOKING_MAX_HOURS} h, 31 days).",
        )


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
    """End after start; start not in the past; not longer than anyone may book (422)."""
    if end <= start:
        raise Refused(422, f"The end ({iso(end)}) must be after the start ({iso(start)}).")
    if start < now - PAST_SLACK:
        raise Refused(422, f"The start ({iso(start)}) is in the past; it is now {iso(now)}.")
    check_length(start, end)


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


def check_tier(
    tier: Tier,
    start: datetime,
    end: datetime,
    now: datetime,
    mine: Iterable[Held],
    *,
    new: bool = True,
) -> None:
    """The tier's booking rules (`Tier.booking`), for a new booking or (``new=False``) a
    changed end.

    ``mine`` are the user's other bookings (for an extension: without the one extended).
    """
    mine = list(mine)
    name, rules = tier.display_name, tier.booking
    if rules.weekly_hours <= 0:
        raise Refused(403, f"Your tier '{name}' cannot book clusters; ask an administrator.")
    longest = rules.max_hours
    if hours(end - start) > longest:
        raise Refused(
            422,
            f"A booking of {_fmt_hours(hours(end - start))} is longer than your tier '{name}' "
            f"allows ({_fmt_hours(longest)} at most).",
        )
    ahead = timedelta(days=rules.ahead_days)
    if new and start > now + ahead:
        raise Refused(
            403,
            f"Your tier '{name}' may book at most {rules.ahead_days:g} days ahead; "
            f"the start {iso(start)} is later than {iso(now + ahead)}.",
        )
    if new:
        live = sum(1 for held in mine if held.state in LIVE_STATES and held.end > now)
        if live >= rules.active:
            raise Refused(
                403,
                f"You already hold {live} upcoming or running booking(s); your tier '{name}' "
                f"allows {rules.active}. Cancel one, or wait until one ends.",
            )
    week = week_of(start)
    already = booked_hours_in_week(mine, week)
    wanted = hours(min(end, week[1]) - start)
    if already + wanted > rules.weekly_hours + 1e-9:
        raise Refused(
            403,
            f"Your tier '{name}' may book {_fmt_hours(rules.weekly_hours)} per week; you have "
            f"{_fmt_hours(already)} booked in the week of {week[0].date().isoformat()}, "
            f"and this booking needs {_fmt_hours(wanted)} more.",
        )

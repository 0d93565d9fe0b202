"""The reservation service as one user of a benchmark run sees it with their hub API
token (``<hub>/services/reservations/api/``, openapi.yaml there): whether the hub has
the service, the sizes it offers, booking a size for the run (with an
``Idempotency-Key``, so a retry never books twice), looking a booking up, cancelling one.

The decisions (how long to book, which of the listed bookings each user runs on, whether
it is active now) are pure functions; `ReservationClient` does the HTTP. Every failure
is a `BookingError` with one line for a reader.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tornado.httpclient import AsyncHTTPClient

from ..reservations.gate import booked_server_name
from .hub import Api, Response, Unreachable, hub_base

SERVICE_PATH = "services/reservations/"
# the longest booking --size makes unless --minutes says otherwise: the tiers' default
# longest booking (tiers.<name>.bookingMaxHours, 8 h); a tier allowing less refuses it
MAX_DEFAULT_MINUTES = 8 * 60
BOOK_ATTEMPTS = 3  # a booking whose answer was lost is asked again with the same key
RETRY_SECONDS = 2.0
LIVE_STATES = ("pending", "active")
NO_SERVICE = "this hub has no reservation service: --size/--booking need one"


class BookingError(Exception):
    """The reservation service did not do something; the message is one line."""


class NoReservationService(BookingError):
    """The hub has no reservation service (404 on its health check)."""

    def __init__(self) -> None:
        super().__init__(NO_SERVICE)


class BookingRefused(BookingError):
    """The service refused a booking (409 no capacity, 403 the tier forbids, 422), in the
    service's words."""


@dataclass(frozen=True)
class Booking:
    """A booking as the service answers it: who holds which size, when, in which state."""

    id: int
    user: str
    size: str
    start: datetime
    end: datetime
    state: str  # pending, active, completed, cancelled
    title: str = ""

    @property
    def server_name(self) -> str:
        """The booking's server, ``r<id>``."""
        return booked_server_name(self.id)

    @classmethod
    def from_json(cls, data: Mapping) -> Booking:
        """A booking from the service's JSON (``Reservation`` in openapi.yaml)."""
        return cls(
            id=int(data["id"]),
            user=str(data["user"]),
            size=str(data["size"]),
            start=parse_time(data["start"]),
            end=parse_time(data["end"]),
            state=str(data["state"]),
            title=str(data.get("title") or ""),
        )


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the service writes it (``2026-12-02T20:00:00Z``), in UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(when: datetime) -> str:
    """``when`` as the service reads it: whole seconds, UTC, ``Z``."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- decisions (pure) ----------------------------------------------------------------------


def default_minutes(
    expected_seconds: Iterable[float], slow_factor: float, start_timeout: float
) -> int:
    """How long ``--size`` books without ``--minutes``: the notebooks' expected seconds ×
    the slow factor (the longest a notebook may take and still not be SLOW), plus the
    server's start timeout, rounded up to a whole minute; at most `MAX_DEFAULT_MINUTES`."""
    seconds = sum(expected_seconds) * slow_factor + start_timeout
    return max(1, min(MAX_DEFAULT_MINUTES, math.ceil(seconds / 60)))


def booking_window(now: datetime, minutes: int) -> tuple[datetime, datetime]:
    """A booking from ``now`` (whole seconds) for ``minutes``."""
    start = now.astimezone(UTC).replace(microsecond=0)
    return start, start + timedelta(minutes=minutes)


def run_title(run_id: str) -> str:
    """The title of the run's bookings (the server's display name on the home page); how
    a booking whose answer never came back is found again to cancel it."""
    return f"aglais-hub benchmark {run_id}"


def size_problem(size: str, offered: Sequence[str]) -> str | None:
    """Why ``--size`` cannot be booked (the service offers no such size), else None."""
    if size in offered:
        return None
    listed = ", ".join(offered) if offered else "none"
    return f"--size {size}: the reservation service offers no such size (it offers: {listed})"


def _possessives(users: Sequence[str]) -> str:
    """``alice's``, ``alice's or bob's``, ``alice's, bob's or carol's``."""
    names = [f"{user}'s" for user in users]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def activity_problem(booking: Booking, now: datetime) -> str | None:
    """Why ``booking`` cannot run the benchmark now, else None. Active means the service's
    state says so, or pending with its start come (the scheduler activates it at its next
    tick; the spawn gate already lets its server start)."""
    label = f"booking {booking.id} of {booking.user}"
    if booking.state == "cancelled":
        return f"{label} was cancelled"
    if booking.state == "completed" or now >= booking.end:
        return f"{label} ended at {iso(booking.end)}"
    if now < booking.start:
        return f"{label} starts at {iso(booking.start)}: not active yet"
    if booking.state not in LIVE_STATES:
        return f"{label} is {booking.state}, not active"
    return None


def choose_bookings(
    ids: Sequence[int],
    users: Sequence[str],
    seen: Mapping[tuple[str, int], Booking | None],
    now: datetime,
) -> tuple[dict[str, Booking], list[str]]:
    """Which of ``--booking ids`` each user runs on, from what each user's token ``seen``
    of each id (None: a 404, not theirs or no such booking); and every problem, one line
    each (any problem refuses the run). Each user must own exactly one of them, active."""
    problems: list[str] = []
    for number in ids:
        if not any(seen.get((user, number)) for user in users):
            problems.append(f"booking {number} is not {_possessives(users)} or does not exist")
    chosen: dict[str, Booking] = {}
    listed = " ".join(str(number) for number in ids)
    for user in users:
        owned = [b for number in ids if (b := seen.get((user, number))) and b.user == user]
        if not owned:
            problems.append(f"{user} has no booking among --booking {listed}")
        elif len(owned) > 1:
            numbers = ", ".join(str(b.id) for b in owned)
            problems.append(
                f"{user} has more than one booking among --booking {listed} ({numbers}): "
                "give one per user"
            )
        elif problem := activity_problem(owned[0], now):
            problems.append(problem)
        else:
            chosen[user] = owned[0]
    return chosen, problems


# -- the service ---------------------------------------------------------------------------


def _message(response: Response) -> str:
    """The service's own message (``{"status", "message"}``), else the HTTP status."""
    body = response.json()
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else f"HTTP {response.status}"


class ReservationClient:
    """The reservation service as ``user`` with ``token``."""

    def __init__(self, http: AsyncHTTPClient, hub_url: str, user: str, token: str) -> None:
        self.user = user
        self.base_url = hub_base(hub_url) + SERVICE_PATH
        self.api = Api(http, self.base_url, token)

    async def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: Mapping | None = None,
        follow_redirects: bool = False,
    ) -> Response:
        try:
            return await self.api.request(
                method, path, body, headers=headers, follow_redirects=follow_redirects
            )
        except Unreachable as error:
            raise BookingError(
                f"cannot reach the reservation service at {self.base_url}: {error.reason}"
            ) from None

    async def check_service(self) -> None:
        """NoReservationService when the hub has none; BookingError when it does not
        answer as one."""
        # without the service the proxy sends its path to the hub, which redirects it
        # to hub/services/reservations/..., a 404
        response = await self._call("GET", "api/health", follow_redirects=True)
        if response.status == 404:
            raise NoReservationService()
        if not response.ok or not isinstance(response.json(), dict):
            raise BookingError(
                f"the reservation service at {self.base_url} does not answer "
                f"(api/health gave {_message(response)})"
            )

    async def sizes(self) -> list[str]:
        """The names of the sizes the service offers, in its order."""
        response = await self._call("GET", "api/sizes")
        body = response.json()
        if not response.ok or not isinstance(body, dict):
            raise BookingError(
                f"the reservation service did not give its sizes to {self.user}: "
                f"{_message(response)}"
            )
        return [str(size["name"]) for size in body.get("sizes") or []]

    async def get(self, number: int) -> Booking | None:
        """Booking ``number`` if it is the user's; None when the service says 404."""
        response = await self._call("GET", f"api/reservations/{number}")
        if response.status == 404:
            return None
        if not response.ok or not isinstance(response.json(), dict):
            raise BookingError(
                f"the reservation service did not give {self.user}'s booking {number}: "
                f"{_message(response)}"
            )
        return Booking.from_json(response.json())

    async def book(
        self, size: str, start: datetime, end: datetime, title: str, key: str
    ) -> Booking:
        """Book ``size`` for ``[start, end)``. A lost answer (no connection, 503) is asked
        again with the same ``key``: the service answers the booking the first request
        made, never a second one. BookingRefused with the service's message."""
        body = {"size": size, "start": iso(start), "end": iso(end), "title": title}
        headers = {"Idempotency-Key": key}
        lost = BookingError(f"the reservation service did not book {size} for {self.user}")
        for attempt in range(BOOK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(RETRY_SECONDS)
            try:
                response = await self._call("POST", "api/reservations", body, headers)
            except BookingError as error:  # no answer: it may have booked, or not
                lost = error
                continue
            if response.status == 503:  # the database or the hub away: retry, says the API
                lost = BookingError(
                    f"the reservation service could not book {size} for {self.user}: "
                    f"{_message(response)}"
                )
                continue
            if response.status in (200, 201) and isinstance(response.json(), dict):
                return Booking.from_json(response.json())
            raise BookingRefused(
                f"the reservation service refused {self.user}'s booking of {size}: "
                f"{_message(response)}"
            )
        raise lost

    async def find(self, title: str) -> list[Booking]:
        """The user's live bookings titled ``title``."""
        response = await self._call("GET", "api/reservations")
        body = response.json()
        if not response.ok or not isinstance(body, dict):
            raise BookingError(
                f"the reservation service did not list {self.user}'s bookings: {_message(response)}"
            )
        found = [Booking.from_json(item) for item in body.get("reservations") or []]
        return [b for b in found if b.title == title and b.state in LIVE_STATES]

    async def cancel(self, number: int) -> str | None:
        """Cancel booking ``number`` (the service stops its server); None when it is
        cancelled (or had ended already), else why not (a warning)."""
        try:
            response = await self._call("DELETE", f"api/reservations/{number}")
        except BookingError as error:
            return f"booking {number} may still be booked: {error}"
        if response.ok or response.status == 409:  # 409: cancelled or completed already
            return None
        return f"the reservation service did not cancel booking {number}: {_message(response)}"

"""Booking operations: the rules and the capacity policy applied inside the store's lock.

Synchronous on purpose (the web handlers run them in a thread pool), so a test or
a benchmark can call them from many threads at once. Every booking operation goes
through `Store.run`, which re-runs it once when the database drops the connection.

The ledger also holds the other queries on bookings, so no module but this one and
the store opens a session: the spawn gate's and the gauges' reads (`booking`,
`held_resources`, `counts_by_state`) and the scheduler's (`due`, `active`,
`record`, `mark_stopped`). Each is one plain transaction, tried once: their callers
already cope with a database that is away (a 503, the scheduler's next tick).

A create may carry the client's idempotency key: a retry with the same key (after a
timeout, a dropped connection, a restarted service) gets the booking the first try
made, never a second one; the same key with a different request is refused (422).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aglais_hub.offering import ProfileRefused, Resources, Tier, UnknownSize

from .models import Booking
from .policy import Span, first_conflict, free_timeline, iso
from .rules import (
    ID_MAX,
    PAST_SLACK,
    Held,
    Refused,
    check_idempotency_key,
    check_length,
    check_tier,
    check_title,
    check_window,
)
from .settings import Settings
from .store import Store

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """Who asks: a hub user (maybe an admin) or a hub service."""

    name: str
    admin: bool = False
    tier: str | None = None


class Ledger:
    """Create, change, cancel and read bookings."""

    def __init__(self, store: Store, settings: Settings, clock: Clock = utcnow):
        self.store = store
        self.settings = settings
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------

    def get(self, caller: Caller, booking_id: int) -> Booking:
        """The booking, if the caller may see it; 404 otherwise (ids of others stay secret)."""
        return self.store.run(lambda session: self._owned(session, caller, booking_id))

    def list(
        self, caller: Caller, user: str | None = None, state: str | None = None
    ) -> list[Booking]:
        """The caller's bookings; admins see everyone's (or ``user``'s)."""
        query = select(Booking).order_by(Booking.start, Booking.id)
        if not caller.admin:
            query = query.where(Booking.user == caller.name)
        elif user:
            query = query.where(Booking.user == user)
        if state:
            query = query.where(Booking.state == state)
        return self.store.run(lambda session: list(session.scalars(query)))

    def timeline(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, Resources]]:
        """Bookable capacity left over ``[start, end)``."""
        margin = self.settings.margin
        held = self.store.run(lambda session: self.store.holding(session, start, end, margin))
        spans = [b.span(margin) for b in held]
        return free_timeline(spans, start, end, self.settings.capacity, self.settings.reserve)

    # -- changing --------------------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        *,
        size: str,
        start: datetime,
        end: datetime,
        title: str = "",
        user: str | None = None,
        tier: str | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Book ``size`` for ``[start, end)``: 201-worthy, or `Refused` (403/404/409/422).

        ``user`` (admins only) books on someone's behalf; ``tier`` is the owner's tier.
        With ``idempotency_key``, a booking this caller already made with that key for
        the same request is returned instead (its ``replayed`` is True).
        """
        owner = user or caller.name
        if user and user != caller.name and not caller.admin:
            raise Refused(403, "Only administrators may book for someone else.")
        try:
            self.settings.offering.named_size(size)
        except UnknownSize as unknown:
            raise Refused(422, str(unknown)) from None
        offer = self.settings.offers[size]
        title = check_title(title)
        digest = None
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            digest = request_digest(owner, offer.name, start, end, title)
            found = self.store.run(lambda session: self._by_key(session, caller, idempotency_key))
            if found is not None:  # a retry: before the time rules (its start may be past now)
                return self._replay(found, idempotency_key, digest)
        now = self.clock()
        check_window(start, end, now)
        on_behalf = caller.admin and owner != caller.name
        tier_obj = self._tier(tier)
        if not on_behalf:
            try:
                self.settings.offering.check_may_use(tier_obj, offer)
            except ProfileRefused as refused:
                raise Refused(403, str(refused)) from None

        def work(session: Session) -> Booking:
            if idempotency_key is not None:  # again, under the lock: a concurrent retry
                found = self._by_key(session, caller, idempotency_key)
                if found is not None:
                    return self._replay(found, idempotency_key, digest)
            if not on_behalf:
                self._check_tier_rules(session, owner, tier_obj, start, end, now)
            self._check_capacity(session, Span(start, end + self.settings.margin, offer.need))
            booking = Booking(
                user=owner,
                size=offer.name,
                title=title,
                start=start,
                end=end,
                state="active" if start <= now else "pending",
                millicores=offer.need.millicores,
                memory=offer.need.memory,
                limits=offer.cluster.as_limits(),
                created_by=caller.name,
                created_at=now,
                updated_at=now,
                idempotency_key=idempotency_key,
                request_digest=digest,
            )
            session.add(booking)
            return booking

        try:
            # with a key, a commit the connection dropped may be re-run: it finds the booking
            return self.store.run(work, booking=True, retry_commit=idempotency_key is not None)
        except IntegrityError:  # the unique (created_by, key): another instance was first
            if idempotency_key is None:
                raise
            found = self.store.run(lambda session: self._by_key(session, caller, idempotency_key))
            if found is None:
                raise
            return self._replay(found, idempotency_key, digest)

    def change_end(
        self, caller: Caller, booking_id: int, end: datetime, tier: str | None = None
    ) -> Booking:
        """Extend (capacity and tier rules re-checked) or shorten (always allowed)."""
        now = self.clock()

        def work(session: Session) -> Booking:
            booking = self._owned(session, caller, booking_id)
            if booking.state in ("completed", "cancelled"):
                raise Refused(409, f"Booking {booking_id} is {booking.state}; it cannot change.")
            if end <= booking.start:
                raise Refused(
                    422, f"The end ({iso(end)}) must be after the start ({iso(booking.start)})."
                )
            if end < now - PAST_SLACK:
                raise Refused(
                    422, f"The new end ({iso(end)}) is in the past; it is now {iso(now)}."
                )
            check_length(booking.start, end)
            if end > booking.end:
                if not (caller.admin and booking.user != caller.name):
                    self._check_tier_rules(
                        session,
                        booking.user,
                        self._tier(tier),
                        booking.start,
                        end,
                        now,
                        extending=booking.id,
                    )
                margin = self.settings.margin
                extra = Span(booking.end + margin, end + margin, booking.need)
                self._check_capacity(session, extra, exclude=booking.id)
            booking.end = end
            booking.updated_at = now
            if booking.warned_at and end - now > self.settings.warn:
                booking.warned_at = None  # warn again before the new end
            return booking

        # setting the same end twice is harmless: a commit the connection dropped is re-run
        return self.store.run(work, booking=True, retry_commit=True)

    def cancel(self, caller: Caller, booking_id: int) -> Booking:
        """Cancel a pending or active booking (its server is stopped by the caller)."""
        now = self.clock()

        def work(session: Session) -> Booking:
            booking = self._owned(session, caller, booking_id)
            if booking.state in ("completed", "cancelled"):
                raise Refused(409, f"Booking {booking_id} is already {booking.state}.")
            booking.state = "cancelled"
            booking.updated_at = now
            return booking

        return self.store.run(work)

    # -- the spawn gate's, the gauges' and the scheduler's -----------------------------

    def booking(self, booking_id: int) -> Booking | None:
        """Booking ``booking_id``, whoever owns it (the gate checks the owner itself)."""
        with self.store.session() as session:
            return session.get(Booking, booking_id)

    def held_resources(self, at: datetime) -> list[Resources]:
        """The footprints of the bookings pending or active at ``at`` (start <= at < end)."""
        query = select(Booking.millicores, Booking.memory).where(
            Booking.state.in_(("pending", "active")), Booking.start <= at, Booking.end > at
        )
        with self.store.session() as session:
            return [Resources(c, m) for c, m in session.execute(query)]

    def counts_by_state(self) -> dict[str, int]:
        """How many bookings are in each state (states without any are absent)."""
        query = select(Booking.state, func.count()).group_by(Booking.state)
        with self.store.session() as session:
            return dict(session.execute(query).all())

    def due(self, now: datetime) -> list[Booking]:
        """The bookings where a transition can be due at ``now`` (never the calendar's
        future): pending ones that started, active ones, and ended ones whose server was
        not stopped yet."""
        query = select(Booking).where(
            or_(
                and_(Booking.state == "pending", Booking.start <= now),
                Booking.state == "active",
                and_(Booking.stopped_at.is_(None), Booking.state.in_(("completed", "cancelled"))),
            )
        )
        with self.store.session() as session:
            return list(session.scalars(query))

    def active(self) -> list[Booking]:
        """Every active booking (the scheduler keeps their servers from being culled)."""
        with self.store.session() as session:
            return list(session.scalars(select(Booking).where(Booking.state == "active")))

    def record(self, booking_id: int, **changes: object) -> Booking:
        """A scheduler transition: set ``changes`` and ``updated_at``; the booking after."""
        with self.store.session() as session:
            booking = session.get(Booking, booking_id)
            for key, value in changes.items():
                setattr(booking, key, value)
            booking.updated_at = self.clock()
        return booking

    def mark_stopped(self, booking_id: int) -> None:
        """A cancelled booking's servers were stopped now (the scheduler need not retry).
        Unlike `record`, only ``stopped_at`` changes (``updated_at`` stays the cancel's)."""
        with self.store.session() as session:
            session.get(Booking, booking_id).stopped_at = self.clock()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _owned(session: Session, caller: Caller, booking_id: int) -> Booking:
        """The booking if the caller may see it; 404 otherwise (others' ids stay secret)."""
        if not isinstance(booking_id, int) or not 1 <= booking_id <= ID_MAX:
            raise Refused(404, f"You have no booking {booking_id}.")  # no such id can exist
        booking = session.get(Booking, booking_id)
        if booking is None or not (caller.admin or booking.user == caller.name):
            raise Refused(404, f"You have no booking {booking_id}.")
        return booking

    @staticmethod
    def _by_key(session: Session, caller: Caller, key: str) -> Booking | None:
        query = select(Booking).where(
            Booking.created_by == caller.name, Booking.idempotency_key == key
        )
        return session.scalars(query).first()

    @staticmethod
    def _replay(found: Booking, key: str, digest: str | None) -> Booking:
        """The booking a retry asks for again, or 422 when the key was used for another request."""
        if found.request_digest != digest:
            raise Refused(
                422,
                f"The Idempotency-Key {key!r} was already used for a different request "
                f"(booking {found.id}); send a new key for a new booking.",
            )
        found.replayed = True
        return found

    def _check_tier_rules(
        self,
        session: Session,
        user: str,
        tier: Tier,
        start: datetime,
        end: datetime,
        now: datetime,
        extending: int | None = None,
    ) -> None:
        """The tier's rules against the user's other bookings (`rules.check_tier`)."""
        mine = [
            Held(b.start, b.end, b.state)
            for b in self.store.of_user(session, user, now)
            if b.id != extending
        ]
        check_tier(tier, start, end, now, mine, new=extending is None)

    def _tier(self, name: str | None) -> Tier:
        """The named tier; the lowest one when unknown (never more than the user has)."""
        tiers = self.settings.tiers
        if name in tiers:
            return tiers[name]
        return min(tiers.values(), key=lambda t: t.rank)

    def _check_capacity(self, session: Session, wanted: Span, exclude: int | None = None) -> None:
        bookable = self.settings.capacity - self.settings.reserve
        if not wanted.need.fits_in(bookable):
            raise Refused(
                409,
                f"This size needs {wanted.need.describe()}, more than the "
                f"{bookable.describe()} the platform can book at all.",
            )
        held = self.store.holding(session, wanted.start, wanted.end, self.settings.margin, exclude)
        spans = [b.span(self.settings.margin) for b in held]
        conflict = first_conflict(spans, wanted, self.settings.capacity, self.settings.reserve)
        if conflict is not None:
            raise Refused(409, conflict.message())


def request_digest(owner: str, size: str, start: datetime, end: datetime, title: str) -> str:
    """What a create asked for, as a SHA-256 (a retry with the same key must ask the same)."""
    fields = [
        owner,
        size,
        start.astimezone(UTC).isoformat(),
        end.astimezone(UTC).isoformat(),
        title,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

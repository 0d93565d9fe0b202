"""Booking operations: the rules and the capacity policy applied inside the store's lock.

Synchronous on purpose (the web handlers run them in a thread pool), so a test or
a benchmark can call them from many threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aglais_hub.quotas import Tier

from .models import Booking
from .policy import Resources, Span, first_conflict, free_timeline, iso
from .rules import PAST_SLACK, Held, Refused, check_tier, check_window
from .settings import Settings
from .store import Store

Clock = Callable[[], datetime]
TITLE_MAX = 200


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
        with self.store.session() as session:
            return self._owned(session, caller, booking_id)

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
        with self.store.session() as session:
            return list(session.scalars(query))

    def timeline(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, Resources]]:
        """Bookable capacity left over ``[start, end)``."""
        margin = self.settings.margin
        with self.store.session() as session:
            spans = [b.span(margin) for b in self.store.holding(session, start, end, margin)]
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
    ) -> Booking:
        """Book ``size`` for ``[start, end)``: 201-worthy, or `Refused` (403/404/409/422).

        ``user`` (admins only) books on someone's behalf; ``tier`` is the owner's tier.
        """
        owner = user or caller.name
        if user and user != caller.name and not caller.admin:
            raise Refused(403, "Only administrators may book for someone else.")
        offer = self.settings.offers.get(size)
        if offer is None:
            known = ", ".join(sorted(self.settings.offers)) or "none"
            raise Refused(422, f"There is no size '{size}' (sizes: {known}).")
        title = (title or "").strip()
        if len(title) > TITLE_MAX:
            raise Refused(422, f"The title is longer than {TITLE_MAX} characters.")
        now = self.clock()
        check_window(start, end, now)
        on_behalf = caller.admin and owner != caller.name
        tier_obj = self._tier(tier)
        if not on_behalf and not self.settings.may_use(tier_obj, offer):
            needed = self.settings.tiers[offer.min_tier].display_name
            raise Refused(
                403,
                f"The size '{offer.display_name}' needs tier '{needed}' or higher; "
                f"your tier is '{tier_obj.display_name}'.",
            )
        with self.store.booking_transaction() as session:
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
                limits=offer.size.as_limits(),
                created_by=caller.name,
                created_at=now,
                updated_at=now,
            )
            session.add(booking)
        return booking

    def change_end(
        self, caller: Caller, booking_id: int, end: datetime, tier: str | None = None
    ) -> Booking:
        """Extend (capacity and tier rules re-checked) or shorten (always allowed)."""
        now = self.clock()
        with self.store.booking_transaction() as session:
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
            if end > booking.end:
                if not (caller.admin and booking.user != caller.name):
                    self._check_tier_rules(session, booking.user, self._tier(tier), booking.start,
                                           end, now, extending=booking.id)  # fmt: skip
                margin = self.settings.margin
                extra = Span(booking.end + margin, end + margin, booking.need)
                self._check_capacity(session, extra, exclude=booking.id)
            booking.end = end
            booking.updated_at = now
            if booking.warned_at and end - now > self.settings.warn:
                booking.warned_at = None  # warn again before the new end
        return booking

    def cancel(self, caller: Caller, booking_id: int) -> Booking:
        """Cancel a pending or active booking (its server is stopped by the caller)."""
        now = self.clock()
        with self.store.session() as session:
            booking = self._owned(session, caller, booking_id)
            if booking.state in ("completed", "cancelled"):
                raise Refused(409, f"Booking {booking_id} is already {booking.state}.")
            booking.state = "cancelled"
            booking.updated_at = now
        return booking

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _owned(session: Session, caller: Caller, booking_id: int) -> Booking:
        """The booking if the caller may see it; 404 otherwise (others' ids stay secret)."""
        booking = session.get(Booking, booking_id)
        if booking is None or not (caller.admin or booking.user == caller.name):
            raise Refused(404, f"You have no booking {booking_id}.")
        return booking

    def _check_tier_rules(
        self, session: Session, user: str, tier: Tier, start: datetime, end: datetime,
        now: datetime, extending: int | None = None,
    ) -> None:  # fmt: skip
        """The tier's rules against the user's other bookings (`rules.check_tier`)."""
        mine = [Held(b.start, b.end, b.state) for b in self.store.of_user(session, user, now)
                if b.id != extending]  # fmt: skip
        rules = self.settings.tier_rules[tier.name]
        check_tier(tier, rules, start, end, now, mine, new=extending is None)

    def _tier(self, name: str | None) -> Tier:
        """The named tier; the lowest one when unknown (never more than the user has)."""
        tiers = self.settings.tiers
        if name in tiers:
            return tiers[name]
        return min(tiers.values(), key=lambda t: t.rank)

    def _check_capacity(self, session: Session, wanted: Span, exclude: int | None = None) -> None:
        bookable = self.settings.capacity - self.settings.reserve
        if not wanted.need.fits_in(bookable):
            raise Refused(409, f"This size needs {wanted.need.describe()}, more than the "
                               f"{bookable.describe()} the platform can book at all.")  # fmt: skip
        held = self.store.holding(session, wanted.start, wanted.end, self.settings.margin, exclude)
        spans = [b.span(self.settings.margin) for b in held]
        conflict = first_conflict(spans, wanted, self.settings.capacity, self.settings.reserve)
        if conflict is not None:
            raise Refused(409, conflict.message())

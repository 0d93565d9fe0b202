"""The reservation service's domain: who calls, the spawn gate's decisions, the gauges.

`Service` holds the ledger, the hub and the unbooked servers' queue, and knows nothing
of HTTP: the handlers in ``app.py`` and ``page.py`` turn requests into its calls and
its answers (and `Refused`) into responses. Database work runs in a small thread pool
(`Service.db`) so one slow transaction never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from aglais_hub.offering import TIER_PROFILE, Resources

from . import benchmark, metrics
from .gate import (
    Decision,
    SpawnQueue,
    alias_refusal,
    booked_decision,
    booking_id,
    shared_free,
)
from .hubapi import HubDirectory
from .ledger import Caller, Ledger
from .models import STATES, Booking
from .rules import Refused, check_user_name
from .scheduler import stop_booking_servers
from .settings import Settings

log = logging.getLogger("aglais.reservations")


class Service:
    """The service's state: the ledger, the hub, the queue, and the spawn gate's callers."""

    def __init__(
        self,
        ledger: Ledger,
        hub: HubDirectory,
        gate_services: frozenset[str] = frozenset({"spawn-gate"}),
    ) -> None:
        self.ledger = ledger
        self.hub = hub
        self.gate_services = gate_services
        self.queue = SpawnQueue()
        self.notify: Callable | None = None  # webhook for booking events (server.build)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="db")

    @property
    def settings(self) -> Settings:
        return self.ledger.settings

    async def db(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the database pool (the ledger is synchronous)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(fn, *args, **kwargs))

    def tier_of(self, groups: tuple[str, ...]) -> str:
        return self.settings.offering.tier_for_groups(groups).name

    async def caller(self, model: dict) -> Caller:
        """A Caller from the hub's user or service model."""
        if model.get("kind") == "service":
            return Caller(f"service:{model['name']}", admin=False)
        user = await self.hub.user(model["name"])
        if user is None:
            return Caller(model["name"], admin=bool(model.get("admin")))
        return Caller(user.name, admin=user.admin, tier=self.tier_of(user.groups))

    async def owner_tier(self, caller: Caller, user: str | None) -> str | None:
        """The tier whose rules a booking for ``user`` (default: the caller) follows."""
        if user is not None:
            check_user_name(user)  # a string naming a hub user (422), before any lookup
        if not user or user == caller.name:
            return caller.tier
        if not caller.admin:
            raise Refused(403, "Only administrators may book for someone else.")
        owner = await self.hub.user(user)
        if owner is None:
            raise Refused(422, f"There is no hub user '{user}'.")
        return self.tier_of(owner.groups)

    async def stop_cancelled(self, booking: Booking) -> None:
        """Tell the owner (webhook) and stop the server now (the scheduler retries if this
        fails)."""
        if self.notify is not None:
            await self.notify("cancelled", booking.as_json())
        try:
            await stop_booking_servers(self.hub, booking)  # r<id>, and names imitating it
        except Exception as error:
            log.warning("Could not stop %s/%s yet: %s", booking.user, booking.server_name, error)
            return
        await self.db(self.ledger.mark_stopped, booking.id)

    # -- spawn gate ------------------------------------------------------------------------

    def _booked_decision(self, user: str, server: str) -> Decision:
        number = booking_id(server)  # canonical r<id> only, always within INTEGER's range
        booking = self.ledger.booking(number) if number is not None else None
        return booked_decision(user, server, booking, self.ledger.clock())

    def _active_needs(self) -> list[Resources]:
        return self.ledger.held_resources(self.ledger.clock())

    async def unbooked_running(self, exclude: set) -> tuple[list[Resources], set, float]:
        """Footprints of unbooked servers running or starting (not the excluded ones)."""
        listed_at, servers = await self.hub.active_servers()
        needs, keys = [], set()
        for server in servers:
            key = (server.user, server.name)
            keys.add(key)
            if booking_id(server.name) is not None or key in exclude:
                continue
            needs.append(
                self.need_of(server.user_options.get("profile"), self.tier_of(server.groups))
            )
        return needs, keys, listed_at

    def need_of(self, profile: object, tier_name: str) -> Resources:
        """What a spawn of ``profile`` holds. The hub's server list carries user_options
        as users sent them (any JSON): anything but a size's name counts as the tier's."""
        offer = self.settings.offers.get(profile) if isinstance(profile, str) else None
        if offer is None or profile == TIER_PROFILE:
            offer = self.settings.tier_offer(self.settings.tiers[tier_name])
        return offer.need

    async def spawn_check(
        self,
        user: str,
        server: str,
        profile: str | None,
        withdraw: bool = False,
        tier: str | None = None,
    ) -> Decision:
        """``tier`` is what the hub's spawner resolved (from auth_state); without it the
        service resolves the tier from the user's hub groups."""
        key = (user, server)
        if withdraw:
            self.queue.withdraw(key)
            return Decision(False, "Withdrawn from the queue.")
        if booking_id(server) is not None:
            decision = await self.db(self._booked_decision, user, server)
            metrics.DECISIONS.labels("booked", "allowed" if decision.allowed else "refused").inc()
            return decision
        refusal = alias_refusal(server)  # r07, r٧, "r7 ": neither booked nor free to use
        if refusal is not None:
            metrics.DECISIONS.labels("booked", "refused").inc()
            return Decision(False, refusal)
        if not isinstance(tier, str) or tier not in self.settings.tiers:
            hub_user = await self.hub.user(user)
            tier = self.tier_of(hub_user.groups if hub_user else ())
        need = self.need_of(profile, tier)
        active = await self.db(self._active_needs)
        exclude = self.queue.queued_keys() | {key}
        running, listed, listed_at = await self.unbooked_running(exclude)
        now = time.monotonic()
        granted = self.queue.recent_grants(now, listed, listed_at)
        free = shared_free(self.settings.capacity, active, [*running, granted])
        decision = self.queue.decide(key, need, free, now, capacity=self.settings.capacity)
        if decision.waited is not None:
            metrics.QUEUE_WAIT.observe(decision.waited)
        metrics.QUEUE_LENGTH.set(len(self.queue.entries))
        outcome = "allowed" if decision.allowed else ("queued" if decision.position else "refused")
        metrics.DECISIONS.labels("unbooked", outcome).inc()
        return decision

    # -- gauges ----------------------------------------------------------------------------

    def refresh_gauges(self) -> None:
        """Set the queue, booking, capacity and benchmark gauges from the queue and the
        database."""
        self.queue.forget_abandoned(time.monotonic())
        # from the database: another instance, or this one before a restart, may have it
        benchmark.set_gauges(benchmark.load_latest(self.ledger.store))
        metrics.QUEUE_LENGTH.set(len(self.queue.entries))
        counts = self.ledger.counts_by_state()
        for state in STATES:
            metrics.BOOKINGS.labels(state).set(counts.get(state, 0))
        booked = Resources()
        for need in self._active_needs():
            booked = booked + need
        capacity = self.settings.capacity
        metrics.set_resources(metrics.CAPACITY, capacity.millicores, capacity.memory)
        metrics.set_resources(metrics.BOOKED, booked.millicores, booked.memory)
        free = capacity - booked
        metrics.set_resources(metrics.FREE, free.millicores, free.memory)

"""Bookings on time: activate, warn, complete, stop at end + grace.

Everything is derived from the database and the clock, never from what the
previous tick remembered, so a service that was down catches up on every end it
missed at its first tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .gate import imitated_booking
from .ledger import Ledger
from .models import Booking
from .policy import iso

log = logging.getLogger("aglais.reservations.scheduler")
Notify = Callable[[str, dict], Awaitable[None]]


def transitions(booking: Booking, now: datetime, warn: object, grace: object) -> list[str]:
    """What is due for one booking at ``now`` (pure): activate, warn, complete, stop."""
    due = []
    state = booking.state
    if state == "pending" and booking.start <= now < booking.end:
        due.append("activate")
        state = "active"
    if state == "active" and booking.warned_at is None and booking.end - warn <= now < booking.end:
        due.append("warn")
    if state in ("pending", "active") and booking.end <= now:
        due.append("complete")
        state = "completed"
    if booking.stopped_at is None and (
        state == "cancelled" or (state == "completed" and booking.end + grace <= now)
    ):
        due.append("stop")
    return due


async def stop_booking_servers(hub: object, booking: Booking) -> bool:
    """Stop the booking's server ``r<id>``, and any server of its owner whose name only
    imitates it (``r07``, ``r٧``: the gate refuses those now, but one started by an older
    version could still run at the booking's size). True when something was stopped.
    Raises when the hub does not answer (the caller retries)."""
    stopped = await hub.stop_server(booking.user, booking.server_name)
    _, servers = await hub.active_servers()
    for server in servers:
        if (
            server.user == booking.user
            and server.name != booking.server_name
            and imitated_booking(server.name) == booking.id
        ):
            log.warning(
                "Stopping %s/%s: its name imitates booking %d's server %s",
                server.user,
                server.name,
                booking.id,
                booking.server_name,
            )
            stopped = await hub.stop_server(server.user, server.name) or stopped
    return stopped


class Scheduler:
    """Runs `tick()` every ``settings.tick`` seconds."""

    def __init__(self, ledger: Ledger, hub: object, notify: Notify | None = None):
        self.ledger = ledger
        self.hub = hub  # a HubDirectory
        self.notify = notify or (lambda event, booking: asyncio.sleep(0))
        self._task: asyncio.Task | None = None
        self.ticks = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a hub hiccup must not end enforcement
                log.exception("Scheduler tick failed; trying again")
            await asyncio.sleep(self.ledger.settings.tick)

    def _due(self, now: datetime) -> list[tuple[Booking, list[str]]]:
        settings = self.ledger.settings
        return [
            (b, d)
            for b in self.ledger.due(now)
            if (d := transitions(b, now, settings.warn, settings.grace))
        ]

    async def tick(self) -> None:
        """Apply every transition due now; stop servers whose booking is over."""
        now = self.ledger.clock()
        for booking, due in self._due(now):
            for step in due:
                await self._apply(booking, step, now)
        await self._keep_booked_servers_alive(now)
        self.ticks += 1

    async def _apply(self, booking: Booking, step: str, now: datetime) -> None:
        if step == "stop":
            stopped = await stop_booking_servers(self.hub, booking)
            if stopped:
                log.info(
                    "Stopped %s/%s: booking %d is %s",
                    booking.user,
                    booking.server_name,
                    booking.id,
                    booking.state,
                )
            self.ledger.record(booking.id, stopped_at=now)
            return
        changes = {
            "activate": {"state": "active"},
            "warn": {"warned_at": now},
            "complete": {"state": "completed"},
        }[step]
        fresh = self.ledger.record(booking.id, **changes)
        event = {"activate": "activated", "warn": "warned", "complete": "completed"}[step]
        log.info(
            "Booking %d of %s %s (%s to %s)",
            booking.id,
            booking.user,
            event,
            iso(booking.start),
            iso(booking.end),
        )
        await self.notify(event, fresh.as_json())

    async def _keep_booked_servers_alive(self, now: datetime) -> None:
        active = self.ledger.active()
        if not active:
            return
        _, servers = await self.hub.active_servers()
        running = {(s.user, s.name) for s in servers}
        for booking in active:
            if (booking.user, booking.server_name) in running:
                await self.hub.touch(booking.user, booking.server_name, now)


def webhook_notifier(url: str) -> Notify:
    """POST ``{"event", "booking"}`` to ``url``; failures are logged, never raised."""

    async def notify(event: str, booking: dict) -> None:
        if not url:
            return
        request = HTTPRequest(
            url,
            method="POST",
            body=json.dumps({"event": event, "booking": booking}),
            headers={"Content-Type": "application/json"},
            request_timeout=5,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except Exception as error:
            log.warning("Webhook %s for booking %s failed: %s", event, booking.get("id"), error)

    return notify

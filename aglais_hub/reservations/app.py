"""The reservation service: a JupyterHub service with a REST API and a web page.

Authenticated by hub OAuth (browsers) or ``Authorization: token <hub token>``
(API clients). The hub's spawners call ``api/spawn-check`` with the token of the
hub service named in ``gate_services``. Database work runs in a small thread
pool so one slow transaction never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from importlib import resources
from typing import Any

import yaml
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from tornado import web

from aglais_hub.quotas import resolve_tier

from . import metrics
from .gate import Decision, SpawnQueue, booked_decision, booking_id, shared_free
from .hubapi import HubDirectory
from .ledger import Caller, Ledger
from .models import STATES, Booking
from .notices import notices
from .policy import Resources, iso, least_free
from .rules import Refused
from .settings import TIER_SIZE, Settings

log = logging.getLogger("aglais.reservations")
TIMELINE_DAYS = 7


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` accepted); 422 for anything else."""
    if not isinstance(value, str) or not value:
        raise Refused(422, f"'{field}' must be an ISO 8601 time such as 2026-12-01T10:00:00Z.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(422, f"'{field}' is not an ISO 8601 time: {value!r}.") from None
    if parsed.tzinfo is None:
        raise Refused(422, f"'{field}' needs a time zone (end it with Z for UTC): {value!r}.")
    return parsed


class Service:
    """The service's state: the ledger, the hub, the queue, and the spawn gate's callers."""

    def __init__(
        self,
        ledger: Ledger,
        hub: HubDirectory,
        values: dict,
        gate_services: frozenset[str] = frozenset({"spawn-gate"}),
    ) -> None:
        self.ledger = ledger
        self.hub = hub
        self.values = values
        self.gate_services = gate_services
        self.queue = SpawnQueue()
        self.notify: Callable | None = None  # webhook for booking events (server.build)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="db")

    @property
    def settings(self) -> Settings:
        return self.ledger.settings

    async def db(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(fn, *args, **kwargs))

    def tier_of(self, groups: tuple[str, ...]) -> str:
        auth = self.values["auth"]
        ranks = {name: t.rank for name, t in self.settings.tiers.items()}
        return resolve_tier(groups, auth["tierGroups"], ranks, auth["defaultTier"])

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
        if not user or user == caller.name:
            return caller.tier
        if not caller.admin:
            raise Refused(403, "Only administrators may book for someone else.")
        owner = await self.hub.user(user)
        if owner is None:
            raise Refused(422, f"There is no hub user '{user}'.")
        return self.tier_of(owner.groups)

    # -- spawn gate ------------------------------------------------------------------------

    def _booked_decision(self, user: str, server: str) -> Decision:
        with self.ledger.store.session() as session:
            booking = session.get(Booking, booking_id(server))
        return booked_decision(user, server, booking, self.ledger.clock())

    def _active_needs(self) -> list[Resources]:
        now = self.ledger.clock()
        query = select(Booking.millicores, Booking.memory).where(
            Booking.state.in_(("pending", "active")), Booking.start <= now, Booking.end > now
        )
        with self.ledger.store.session() as session:
            return [Resources(c, m) for c, m in session.execute(query)]

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

    def need_of(self, profile: str | None, tier_name: str) -> Resources:
        offer = self.settings.offers.get(profile or "")
        if offer is None or profile == TIER_SIZE:
            offer = self.settings.tier_offer(self.settings.tiers[tier_name])
        return offer.need

    async def spawn_check(
        self, user: str, server: str, profile: str | None, withdraw: bool = False,
        tier: str | None = None,
    ) -> Decision:  # fmt: skip
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
        if tier not in self.settings.tiers:
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
        self.queue.forget_abandoned(time.monotonic())
        metrics.QUEUE_LENGTH.set(len(self.queue.entries))
        with self.ledger.store.session() as session:
            counts = dict(
                session.execute(select(Booking.state, func.count()).group_by(Booking.state)).all()
            )
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


# -- handlers ------------------------------------------------------------------------------


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    service: Service
    caller: Caller | None = None

    def initialize(self, service: Service) -> None:
        self.service = service

    async def prepare(self) -> None:
        # HubAuth's own get_current_user would block the loop on a token lookup
        model = None
        try:
            found = await self.hub_auth.get_user(self, sync=False)
            model = self.check_hub_user(found) if found else None
        except UserNotAllowed:
            model = None
        self._hub_auth_user_cache = model
        self.caller = await self.service.caller(model) if model else None

    def json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class ApiHandler(BaseHandler):
    """JSON in, JSON out; errors are ``{"status", "message"}``."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.caller is None and self.needs_login:
            raise web.HTTPError(
                403, "Log in to the hub, or send 'Authorization: token <hub token>'."
            )

    needs_login = True

    def refuse(self, status: int, message: str) -> None:
        """Answer ``{"status", "message"}`` with that status."""
        self.json(status, {"status": status, "message": message})

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError:
            raise Refused(422, "The request body is not JSON.") from None
        if not isinstance(data, dict):
            raise Refused(422, "The request body must be a JSON object.")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def run(self, action: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A ledger call in the pool; `Refused` becomes its HTTP status and message."""
        try:
            result = await self.service.db(fn, *args, **kwargs)
        except Refused as refused:
            metrics.REQUESTS.labels(action, str(refused.status)).inc()
            self.refuse(refused.status, refused.message)
            return None
        metrics.REQUESTS.labels(action, "ok").inc()
        return result


class HealthHandler(ApiHandler):
    needs_login = False

    def get(self) -> None:
        self.json(200, {"status": "ok"})


class SizesHandler(ApiHandler):
    def get(self) -> None:
        settings = self.service.settings
        self.json(
            200,
            {
                "sizes": [o.as_json() for o in settings.offers.values()],
                "capacity": settings.capacity.as_json(),
                "reserve": settings.reserve.as_json(),
            },
        )


class CapacityHandler(ApiHandler):
    async def get(self) -> None:
        now = self.service.ledger.clock()
        try:
            start = parse_time(self.get_argument("start", iso(now)), "start")
            end = parse_time(
                self.get_argument("end", iso(now + timedelta(days=TIMELINE_DAYS))), "end"
            )
            if end <= start:
                raise Refused(422, "'end' must be after 'start'.")
            if end - start > timedelta(days=92):
                raise Refused(422, "Ask for at most 92 days at a time.")
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        timeline = await self.service.db(self.service.ledger.timeline, start, end)
        least = least_free(timeline)
        self.json(
            200,
            {
                "start": iso(start),
                "end": iso(end),
                "free": least.as_json(),
                "sizes": {
                    name: {"bookable": offer.need.count_in(least)}
                    for name, offer in self.service.settings.offers.items()
                },
                "timeline": [
                    {
                        "start": iso(a),
                        "end": iso(b),
                        "free": free.as_json(),
                        "sizes": {
                            n: o.need.count_in(free)
                            for n, o in self.service.settings.offers.items()
                        },
                    }
                    for a, b, free in timeline
                ],
            },
        )


class ReservationsHandler(ApiHandler):
    async def get(self) -> None:
        state = self.get_argument("state", None)
        if state is not None and state not in STATES:
            return self.refuse(422, f"state must be one of {', '.join(STATES)}.")
        bookings = await self.service.db(
            self.service.ledger.list, self.caller, self.get_argument("user", None), state
        )
        self.json(200, {"reservations": [b.as_json() for b in bookings]})

    async def post(self) -> None:
        try:
            data = self.body()
            unknown = set(data) - {"size", "start", "end", "title", "user"}
            if unknown:
                raise Refused(422, f"Unknown field(s): {', '.join(sorted(unknown))}.")
            if not isinstance(data.get("size"), str):
                raise Refused(422, "'size' must name one of the sizes (GET api/sizes).")
            if not isinstance(data.get("title", ""), str):
                raise Refused(422, "'title' must be a string.")
            start, end = parse_time(data.get("start"), "start"), parse_time(data.get("end"), "end")
            user = data.get("user")
            tier = await self.service.owner_tier(self.caller, user)
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        booking = await self.run(
            "create",
            self.service.ledger.create,
            self.caller,
            size=data["size"],
            start=start,
            end=end,
            title=data.get("title", ""),
            user=user,
            tier=tier,
        )
        if booking is not None:
            log.info(
                "%s booked %s for %s: %s to %s (booking %d)",
                self.caller.name,
                booking.size,
                booking.user,
                iso(booking.start),
                iso(booking.end),
                booking.id,
            )
            self.set_header("Location", f"{self.request.path.rstrip('/')}/{booking.id}")
            self.json(201, booking.as_json())


class ReservationHandler(ApiHandler):
    async def get(self, booking_id: str) -> None:
        booking = await self.run("get", self.service.ledger.get, self.caller, int(booking_id))
        if booking is not None:
            self.json(200, booking.as_json())

    async def patch(self, booking_id: str) -> None:
        try:
            data = self.body()
            if set(data) != {"end"}:
                raise Refused(422, 'Send {"end": <ISO 8601 time>} to extend or shorten a booking.')
            end = parse_time(data["end"], "end")
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        booking = await self.run(
            "change",
            self.service.ledger.change_end,
            self.caller,
            int(booking_id),
            end,
            self.caller.tier,
        )
        if booking is not None:
            self.json(200, booking.as_json())

    async def delete(self, booking_id: str) -> None:
        booking = await self.run("cancel", self.service.ledger.cancel, self.caller, int(booking_id))
        if booking is None:
            return
        await stop_cancelled(self.service, booking)
        self.json(200, booking.as_json())


async def stop_cancelled(service: Service, booking: Booking) -> None:
    """Tell the owner (webhook) and stop the server now (the scheduler retries if this fails)."""
    if service.notify is not None:
        await service.notify("cancelled", booking.as_json())
    try:
        await service.hub.stop_server(booking.user, booking.server_name)
    except Exception as error:
        log.warning("Could not stop %s/%s yet: %s", booking.user, booking.server_name, error)
        return

    def mark() -> None:
        with service.ledger.store.session() as session:
            session.get(Booking, booking.id).stopped_at = service.ledger.clock()

    await service.db(mark)


class NoticesHandler(ApiHandler):
    """The caller's booking notices (ends near, servers about to stop)."""

    async def get(self) -> None:
        ledger, settings = self.service.ledger, self.service.settings
        mine = await self.service.db(ledger.list, Caller(self.caller.name))
        found = notices(mine, ledger.clock(), settings.warn, settings.grace)
        server = self.get_argument("server_name", None)
        if server is not None:
            found = [n for n in found if n["server_name"] == server]
        self.json(200, {"notices": found})


class SpawnCheckHandler(ApiHandler):
    async def post(self) -> None:
        started = time.perf_counter()
        gate = {f"service:{name}" for name in self.service.gate_services}
        if self.caller.name not in gate and not self.caller.admin:
            return self.refuse(403, "Only the hub asks spawn-check.")
        try:
            data = self.body()
            user, server = data.get("user"), data.get("server_name", "")
            if not isinstance(user, str) or not user or not isinstance(server, str):
                raise Refused(422, 'Send {"user", "server_name", "profile"}.')
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        decision = await self.service.spawn_check(
            user, server, data.get("profile"), withdraw=bool(data.get("withdraw")),
            tier=data.get("tier"),
        )  # fmt: skip
        metrics.SPAWN_CHECK.observe(time.perf_counter() - started)
        self.json(200, decision.as_json())


class OpenApiHandler(ApiHandler):
    needs_login = False

    def get(self) -> None:
        spec = yaml.safe_load(resources.files(__package__).joinpath("openapi.yaml").read_text())
        prefix = self.settings["service_prefix"]
        spec["servers"] = [{"url": prefix}]
        self.json(200, spec)


class MetricsHandler(ApiHandler):
    needs_login = False

    async def get(self) -> None:
        await self.service.db(self.service.refresh_gauges)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.REGISTRY))


def make_app(
    service: Service, prefix: str, cookie_secret: bytes, page_handlers: list | None = None
) -> web.Application:
    """The tornado application, every route under the service ``prefix``."""
    prefix = "/" + prefix.strip("/") + "/"
    kwargs = {"service": service}
    routes = [
        (prefix + "api/health", HealthHandler, kwargs),
        (prefix + "api/openapi.json", OpenApiHandler, kwargs),
        (prefix + "api/sizes", SizesHandler, kwargs),
        (prefix + "api/capacity", CapacityHandler, kwargs),
        (prefix + "api/reservations", ReservationsHandler, kwargs),
        (prefix + r"api/reservations/(\d+)", ReservationHandler, kwargs),
        (prefix + "api/spawn-check", SpawnCheckHandler, kwargs),
        (prefix + "api/notices", NoticesHandler, kwargs),
        (prefix + "metrics", MetricsHandler, kwargs),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        *((prefix + path, handler, kwargs) for path, handler in (page_handlers or [])),
    ]
    return web.Application(
        routes,
        service_prefix=prefix,
        cookie_secret=cookie_secret,  # signs HubOAuth's token cookie
    )

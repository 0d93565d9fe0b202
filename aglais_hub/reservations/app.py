"""The reservation service's HTTP side: a JupyterHub service with a REST API and a web page.

Authenticated by hub OAuth (browsers) or ``Authorization: token <hub token>``
(API clients). The hub's spawners call ``api/spawn-check`` with the token of the
hub service named in ``gate_services``. The handlers here (and the page's, in
``page.py``) read requests and write responses; what they decide with is
`service.Service`, whose database work runs in its thread pool.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from typing import Any

import yaml
from jupyterhub.services.auth import HubOAuthCallbackHandler, UserNotAllowed
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError
from tornado import web
from tornado.httpclient import HTTPClientError

from aglais_hub.hubconfig import BENCHMARK, NOTICES_SCOPE
from aglais_hub.offering import TIER_PROFILE
from aglais_hub.serviceapi import HubServiceHandler, JsonApiHandler, with_error_responses

from . import benchmark, metrics
from .gate import spawn_request
from .ledger import Caller
from .models import STATES
from .notices import notices
from .policy import iso, least_free
from .rules import Refused, check_idempotency_key, check_user_name, parse_time
from .service import Service

log = logging.getLogger("aglais.reservations")
TIMELINE_DAYS = 7


def unavailable(error: BaseException) -> str | None:
    """What is away when ``error`` is the database's or the hub's fault (a 503), else None."""
    if isinstance(error, SQLAlchemyError):
        return "The bookings database is not answering right now; try again shortly."
    if isinstance(error, HTTPClientError | OSError | asyncio.TimeoutError):
        return "The hub is not answering the reservation service right now; try again shortly."
    return None


# -- handlers ------------------------------------------------------------------------------


class BaseHandler(HubServiceHandler):
    """The reservation service's caller: a hub user with their tier, or a hub service."""

    title = "the reservation service"
    service: Service
    caller: Caller | None = None

    async def resolve_caller(self, model: dict) -> Caller | None:
        return await self.service.caller(model)


class ApiHandler(BaseHandler, JsonApiHandler):
    """The reservation API's handlers: `serviceapi.JsonApiHandler`'s error rules, with the
    bookings database and the hub as what may be away."""

    realm = "reservations"

    def unavailable(self, error: BaseException) -> str | None:
        return unavailable(error)

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
        state, user = self.get_argument("state", None), self.get_argument("user", None)
        if state is not None and state not in STATES:
            return self.refuse(422, f"state must be one of {', '.join(STATES)}.")
        try:
            if user is not None:
                check_user_name(user)
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        bookings = await self.run("list", self.service.ledger.list, self.caller, user, state)
        self.json(200, {"reservations": [b.as_json() for b in bookings]})

    async def post(self) -> None:
        try:
            key = self.request.headers.get("Idempotency-Key")
            if key is not None:
                check_idempotency_key(key)
            data = self.body()
            unknown = set(data) - {"size", "start", "end", "title", "user"}
            if unknown:
                raise Refused(422, f"Unknown field(s): {', '.join(sorted(unknown)[:10])[:300]}.")
            if not isinstance(data.get("size"), str):
                raise Refused(422, "'size' must name one of the sizes (GET api/sizes).")
            if not isinstance(data.get("title", ""), str):
                raise Refused(422, "'title' must be a string.")
            start, end = parse_time(data.get("start"), "start"), parse_time(data.get("end"), "end")
            user = data.get("user")
            if "user" in data:
                check_user_name(user)  # not a number, not null: a hub user's name
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
            idempotency_key=key,
        )
        if booking is not None and booking.replayed:  # a retry: the booking the key made
            self.set_header("Location", f"{self.request.path.rstrip('/')}/{booking.id}")
            return self.json(200, booking.as_json())
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
    noun = "booking"

    async def get(self, booking_id: str) -> None:
        if (number := self.path_id(booking_id)) is None:
            return
        booking = await self.run("get", self.service.ledger.get, self.caller, number)
        if booking is not None:
            self.json(200, booking.as_json())

    async def patch(self, booking_id: str) -> None:
        if (number := self.path_id(booking_id)) is None:
            return
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
            number,
            end,
            self.caller.tier,
        )
        if booking is not None:
            self.json(200, booking.as_json())

    async def delete(self, booking_id: str) -> None:
        if (number := self.path_id(booking_id)) is None:
            return
        booking = await self.run("cancel", self.service.ledger.cancel, self.caller, number)
        if booking is None:
            return
        await self.service.stop_cancelled(booking)
        self.json(200, booking.as_json())


class NoticesHandler(ApiHandler):
    """The caller's booking notices (ends near, servers about to stop).

    The one route that also takes a token holding only ``custom:reservations:notices``
    for its own user (what servers' own tokens carry, for the auth proxy's banner); every
    other route needs ``access:services!service=reservations``.
    """

    def check_hub_user(self, model: dict) -> dict | None:
        try:
            return super().check_hub_user(model)
        except UserNotAllowed:
            if model.get("kind", "user") != "user":
                raise
            own = {f"{NOTICES_SCOPE}!user={model['name']}"}
            if self.hub_auth.check_scopes(own, model):
                return model
            raise

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
            # every field's type and size checked: a 422 naming it, never a 500
            asked = spawn_request(self.body(), [TIER_PROFILE, *self.service.settings.offers])
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        try:
            decision = await self.service.spawn_check(
                asked.user,
                asked.server_name,
                asked.profile,
                withdraw=asked.withdraw,
                tier=asked.tier,
            )
        except Exception as error:
            # 503 lets the hub follow its whenUnreachable (unbooked spawns may start): only
            # for the hub or the database being away. Anything else is a 500, which the hub
            # reads as a refusal (the gate fails closed), so no request can open it.
            if self.dependency_away(error):
                log.warning("spawn-check for %s/%s: %s", asked.user, asked.server_name, error)
                return self.refuse(
                    503, "The reservation service cannot reach the hub or its database right now."
                )
            log.exception("spawn-check for %s/%s failed", asked.user, asked.server_name)
            return self.refuse(
                500, "The reservation service failed on this spawn-check (it is logged)."
            )
        metrics.SPAWN_CHECK.observe(time.perf_counter() - started)
        self.json(200, decision.as_json())

    @staticmethod
    def dependency_away(error: Exception) -> bool:
        """The hub not answering (no connection, timeout, 5xx) or the database gone
        (connection, pool). Narrower than `unavailable`, which also counts the hub's 4xx
        answers and every database error (a bad value, say) as the service being away."""
        if isinstance(error, HTTPClientError):  # from the hub's API
            return error.code == 599 or error.code >= 500
        return isinstance(
            error, (OSError, sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
        )


class BenchmarkHandler(ApiHandler):
    """The latest nightly benchmark run's summary, which ``metrics`` shows as gauges: sent
    (PUT) by the hub's ``benchmark`` service after each run, read (GET) by it or an admin."""

    def refused(self) -> bool:
        if self.caller.name == f"service:{BENCHMARK}" or self.caller.admin:
            return False
        self.refuse(403, "Only the hub's benchmark service (or an admin) reports benchmark runs.")
        return True

    async def get(self) -> None:
        if self.refused():
            return
        summary = await self.service.db(benchmark.load_latest, self.service.ledger.store)
        if summary is None:
            return self.refuse(404, "No benchmark run has reported yet.")
        self.json(200, summary)

    async def put(self) -> None:
        if self.refused():
            return
        try:
            summary = benchmark.parse_summary(self.body())
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        ledger = self.service.ledger
        await self.service.db(benchmark.save_latest, ledger.store, summary, ledger.clock())
        benchmark.set_gauges(summary)
        log.info("benchmark run %s: %s", summary["run_id"], summary["counts"])
        self.json(200, summary)


@functools.cache
def openapi_document() -> dict:
    """openapi.yaml, every operation listing the errors every route answers
    (`serviceapi.with_error_responses`)."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text()
    return with_error_responses(yaml.safe_load(text))


class OpenApiHandler(ApiHandler):
    """openapi.yaml, with this service's prefix, the names of its sizes (an enum), and
    examples that work today (a booking starting tomorrow)."""

    needs_login = False

    def get(self) -> None:
        spec = copy.deepcopy(openapi_document())
        spec["servers"] = [{"url": self.settings["service_prefix"]}]
        offers = self.service.settings.offers
        if offers:
            spec["components"]["schemas"]["SizeName"]["enum"] = list(offers)
            smallest = min(offers.values(), key=lambda o: (o.need.millicores, o.need.memory))
            start = self.service.ledger.clock().replace(minute=0, second=0, microsecond=0)
            start += timedelta(days=1)
            times = {"start": iso(start), "end": iso(start + timedelta(hours=1))}
            paths = spec["paths"]
            body = paths["/api/reservations"]["post"]["requestBody"]["content"]
            body["application/json"]["example"] = {
                "size": smallest.name,
                **times,
                "title": "Gaia DR3 cross-match",
            }
            change = paths["/api/reservations/{id}"]["patch"]["requestBody"]["content"]
            change["application/json"]["example"] = {"end": times["end"]}
            for parameter in paths["/api/capacity"]["get"]["parameters"]:
                parameter["example"] = times[parameter["name"]]
        self.json(200, spec)


class NotFoundHandler(ApiHandler):
    """Any other path under api/: a JSON 404, not tornado's HTML page."""

    needs_login = False

    async def prepare(self) -> None:
        raise web.HTTPError(404, "There is no such API route; see api/openapi.json.")


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
        (prefix + "api/benchmark/latest", BenchmarkHandler, kwargs),
        (prefix + "api/.*", NotFoundHandler, kwargs),  # after every API route
        (prefix + "metrics", MetricsHandler, kwargs),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        *((prefix + path, handler, kwargs) for path, handler in (page_handlers or [])),
    ]
    return web.Application(
        routes,
        service_prefix=prefix,
        cookie_secret=cookie_secret,  # signs HubOAuth's token cookie
    )

"""The reservations web page, in the hub's look: it extends the hub's own ``page.html``.

Plain HTML forms (no JavaScript needed): book, cancel, extend. Every form carries
the hub's XSRF token; a POST without it is not authenticated and gets a 403.
Everything user-written goes through Jinja's autoescaping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from jupyterhub._data import DATA_FILES_PATH
from tornado import web

from aglais_hub.offering import Resources

from .app import BaseHandler
from .ledger import Caller
from .notices import notices
from .policy import iso, least_free
from .rules import BOOKING_MAX_HOURS, Refused, check_year, parse_id
from .service import Service

HERE = Path(__file__).resolve().parent
HOURS_SHOWN = 24 * 7
NOTICES = {
    "booked": "Booked: booking {id} is on the list below.",
    "cancelled": "Booking {id} is cancelled.",
    "changed": "Booking {id} now ends at the time shown below.",
}


def environment() -> Environment:
    """Our templates first, then the hub's (for page.html and its macros)."""
    loader = ChoiceLoader(
        [
            FileSystemLoader(HERE / "templates"),
            FileSystemLoader(Path(DATA_FILES_PATH) / "templates"),
        ]
    )
    return Environment(loader=loader, autoescape=select_autoescape(default=True))


def parse_local(value: str, field: str) -> datetime:
    """A ``datetime-local`` form value, read as UTC (in the years 2000–2100)."""
    try:
        if len(value) > 40:
            raise ValueError(value)
        when = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise Refused(422, f"'{field}' is not a date and time: {value[:40]!r}.") from None
    return check_year(when, field)


def hourly_free(timeline: list, start: datetime, hours: int) -> list[tuple[datetime, Resources]]:
    """The least free capacity in each hour from ``start`` (for the timeline strip)."""
    cells = []
    for h in range(hours):
        a, b = start + timedelta(hours=h), start + timedelta(hours=h + 1)
        cells.append((a, least_free(piece for piece in timeline if piece[0] < b and piece[1] > a)))
    return cells


class PageHandler(BaseHandler):
    """GET shows the page; POST applies one form (book, cancel, extend)."""

    env = environment()

    def user_for_template(self) -> dict | None:
        name = self.caller.name
        return {"name": name, "json_escaped_name": json.dumps(name)[1:-1]}

    async def render_page(
        self, status: int = 200, error: str = "", form: dict | None = None
    ) -> None:
        service: Service = self.service
        ledger = service.ledger
        now = ledger.clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        timeline = await service.db(ledger.timeline, hour, hour + timedelta(hours=HOURS_SHOWN))
        mine = await service.db(ledger.list, Caller(self.caller.name))  # own, even for admins
        everyone = await service.db(ledger.list, self.caller) if self.caller.admin else []
        capacity = service.settings.capacity - service.settings.reserve
        offers = list(service.settings.offers.values())
        days = {}
        for when, free in hourly_free(timeline, hour, HOURS_SHOWN):
            share = (
                0 if capacity.millicores <= 0 else max(0.0, free.millicores / capacity.millicores)
            )
            fits = ", ".join(f"{o.display_name}: {o.need.count_in(free)}" for o in offers)
            row = days.setdefault(when.date().isoformat(), [None] * 24)
            row[when.hour] = {
                "share": share,
                "title": f"{iso(when)}: {free.describe()} free ({fits})",
            }
        settings = service.settings
        warnings = [n["message"] for n in notices(mine, now, settings.warn, settings.grace)]
        notice = ""
        kind, booking_id = self.get_argument("notice", ""), self.get_argument("id", "")
        if kind in NOTICES and booking_id.isdigit():
            notice = NOTICES[kind].format(id=booking_id)
        hub_prefix = self.hub_auth.hub_prefix
        template = self.env.get_template("reservations.html")
        html = template.render(
            # what the hub's page.html expects
            base_url=hub_prefix,
            prefix=self.hub_auth.base_url,
            user=self.user_for_template(),
            static_url=lambda path, include_version=True: f"{hub_prefix}static/{path}",
            logo_url="",
            login_url=self.hub_auth.login_url,
            logout_url=f"{hub_prefix}logout",
            parsed_scopes={"admin-ui"} if self.caller.admin else set(),
            admin_access=self.caller.admin,
            services=[],
            version_hash="",
            xsrf_token=self.xsrf_token.decode(),
            no_spawner_check=True,
            announcement="",
            # ours
            page_url=self.request.path,
            now=iso(now),
            error=error,
            notice=notice,
            warnings=warnings,
            offers=offers,
            days=days,
            mine=mine,
            everyone=everyone,
            admin=self.caller.admin,
            form=form or {},
            spawn_url=f"{hub_prefix}spawn/",
            iso=iso,
            default_start=(hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            max_hours=BOOKING_MAX_HOURS,
        )
        self.set_status(status)
        self.finish(html)

    @web.authenticated
    async def get(self) -> None:
        await self.render_page()

    @web.authenticated
    async def post(self) -> None:
        action = self.get_body_argument("action", "")
        form = {
            k: self.get_body_argument(k, "") for k in ("size", "start", "hours", "title", "user")
        }
        try:
            if action == "book":
                booking = await self._book(form)
                return self._done("booked", booking.id)
            if action in ("cancel", "extend"):
                sent = self.get_body_argument("id", "")
                if not sent:
                    raise Refused(422, "Which booking? The form sent no id.")
                number = parse_id(sent)
                if number is None:
                    raise Refused(404, f"You have no booking {sent[:20]}.")
                if action == "cancel":
                    booking = await self.service.db(self.service.ledger.cancel, self.caller, number)
                    await self.service.stop_cancelled(booking)
                    return self._done("cancelled", booking.id)
                end = parse_local(self.get_body_argument("end", ""), "end")
                booking = await self.service.db(
                    self.service.ledger.change_end, self.caller, number, end, self.caller.tier
                )
                return self._done("changed", booking.id)
            raise Refused(422, f"Unknown action {action!r}.")
        except Refused as refused:
            await self.render_page(refused.status, refused.message, form)

    async def _book(self, form: dict):  # noqa: ANN202
        start = parse_local(form["start"], "start")
        try:
            hours = float(form["hours"])
        except ValueError:
            raise Refused(422, f"'hours' must be a number: {form['hours'][:20]!r}.") from None
        # the ledger holds everyone (admins too) to BOOKING_MAX_HOURS; this bound only
        # keeps the date arithmetic below from overflowing on "1e300"
        if not 0 < hours <= BOOKING_MAX_HOURS:
            raise Refused(422, f"'hours' must be more than 0 and at most {BOOKING_MAX_HOURS}.")
        user = form["user"].strip() or None
        tier = await self.service.owner_tier(self.caller, user)
        return await self.service.db(
            self.service.ledger.create,
            self.caller,
            size=form["size"],
            start=start,
            end=start + timedelta(hours=hours),
            title=form["title"],
            user=user,
            tier=tier,
        )

    def _done(self, kind: str, booking_id: int) -> None:
        self.redirect(
            f"{self.request.path}?{urlencode({'notice': kind, 'id': booking_id})}", status=303
        )

"""The Git service's web page, in the hub's look: it extends the hub's own ``page.html``.

Plain HTML forms (no JavaScript): link a repository, remove a link. Every form carries
the hub's XSRF token; a POST without it is not authenticated and gets a 403. The token
field is a password input that is never filled in: a token is sent once and never
rendered back, not even when the form comes back with an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from jupyterhub._data import DATA_FILES_PATH
from tornado import web

from aglais_hub.reservations.rules import Refused, parse_id

from .app import BaseHandler
from .models import iso
from .rules import new_link
from .service import Caller

HERE = Path(__file__).resolve().parent
NOTICES = {
    "added": "Linked: the repository is link {id} below.",
    "removed": "Link {id} is removed (its token with it).",
}
FORM_FIELDS = ("url", "branch", "folder", "username")  # echoed back on an error; not token


def environment() -> Environment:
    """Our templates first, then the hub's (for page.html and its macros)."""
    loader = ChoiceLoader(
        [
            FileSystemLoader(HERE / "templates"),
            FileSystemLoader(Path(DATA_FILES_PATH) / "templates"),
        ]
    )
    return Environment(loader=loader, autoescape=select_autoescape(default=True))


def link_form(fields: dict[str, str], strip_outputs: bool) -> dict:
    """A POST body for `rules.new_link` from the page's form (empty optional fields
    left out). Pure."""
    data: dict = {k: fields[k] for k in ("url", "branch", "token") if k in fields}
    if fields.get("folder"):
        data["folder"] = fields["folder"]
    if fields.get("username"):
        data["username"] = fields["username"]
    data["strip_outputs"] = strip_outputs
    return data


class PageHandler(BaseHandler):
    """GET shows the page; POST applies one form (add, remove)."""

    env = environment()

    def hub_context(self) -> dict:
        """What the hub's page.html expects."""
        hub_prefix = self.hub_auth.hub_prefix
        name = self.caller.name
        return {
            "base_url": hub_prefix,
            "prefix": self.hub_auth.base_url,
            "user": {"name": name, "json_escaped_name": json.dumps(name)[1:-1]},
            "static_url": lambda path, include_version=True: f"{hub_prefix}static/{path}",
            "logo_url": "",
            "login_url": self.hub_auth.login_url,
            "logout_url": f"{hub_prefix}logout",
            "parsed_scopes": {"admin-ui"} if self.caller.admin else set(),
            "admin_access": self.caller.admin,
            "services": [],
            "version_hash": "",
            "xsrf_token": self.xsrf_token.decode(),
            "no_spawner_check": True,
            "announcement": "",
        }

    async def render_page(
        self, status: int = 200, error: str = "", form: dict | None = None
    ) -> None:
        service = self.service
        mine = await service.db(service.list_links, Caller(self.caller.name))  # own, even admins'
        everyone = await service.db(service.list_links, self.caller) if self.caller.admin else []
        notice = ""
        kind, link_id = self.get_argument("notice", ""), self.get_argument("id", "")
        if kind in NOTICES and link_id.isdigit():
            notice = NOTICES[kind].format(id=link_id)
        html = self.env.get_template("gitsync.html").render(
            **self.hub_context(),
            page_url=self.request.path,
            error=error,
            notice=notice,
            mine=mine,
            everyone=everyone,
            admin=self.caller.admin,
            form=form or {},
            iso=iso,
        )
        self.set_status(status)
        self.finish(html)

    @web.authenticated
    async def get(self) -> None:
        await self.render_page()

    @web.authenticated
    async def post(self) -> None:
        action = self.get_body_argument("action", "")
        fields = {k: self.get_body_argument(k, "") for k in (*FORM_FIELDS, "token")}
        strip_outputs = bool(self.get_body_argument("strip_outputs", ""))
        shown = {k: fields[k] for k in FORM_FIELDS} | {"strip_outputs": strip_outputs}
        try:
            if action == "add":
                asked = new_link(link_form(fields, strip_outputs))
                link = await self.service.db(self.service.create_link, self.caller, asked)
                return self._done("added", link.id)
            if action == "remove":
                sent = self.get_body_argument("id", "")
                number = parse_id(sent)
                if number is None:
                    raise Refused(404, f"You have no link {sent[:20]}.")
                link = await self.service.db(self.service.delete_link, self.caller, number)
                return self._done("removed", link.id)
            raise Refused(422, f"Unknown action {action[:40]!r}.")
        except Refused as refused:
            await self.render_page(refused.status, refused.message, shown)

    def _done(self, kind: str, link_id: int) -> None:
        self.redirect(
            f"{self.request.path}?{urlencode({'notice': kind, 'id': link_id})}", status=303
        )

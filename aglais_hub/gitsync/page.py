"""The Git service's web page, in the hub's look: it extends the hub's own ``page.html``.

Plain HTML forms (no JavaScript): link a repository, remove a link, and, in a link's
own view (``?link=<id>``), import notebooks from it into the user's server and commit
notebooks from the server back to it. Every form carries the hub's XSRF token; a POST
without it is not authenticated and gets a 403. The token field is a password input
that is never filled in: a token is sent once and never rendered back, not even when
the form comes back with an error. Every error the API would answer is shown in words
(`alert_of`), never as a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from jupyterhub._data import DATA_FILES_PATH
from tornado import web

from aglais_hub.reservations.rules import Refused, parse_id

from .app import BaseHandler, server_argument
from .contents import ContentsClient, ContentsError, ContentsNotFound, ServerNotRunning
from .errors import CredentialUnreadable, GitSyncError, MergeConflict, PushRejected
from .git import NotebookEntry
from .models import ImportRecord, Link, iso
from .rules import new_link
from .service import Caller
from .sync import repository_folder, server_path
from .transfer import PATHS_MAX, author_of, commit_words
from .vault import VaultError

HERE = Path(__file__).resolve().parent
NOTICES = {
    "added": "Linked: the repository is link {id} below.",
    "removed": "Link {id} is removed (its token with it).",
}
FORM_FIELDS = ("url", "branch", "folder", "username")  # echoed back on an error; not token
MESSAGE_MAX = 10_000  # characters in a commit message (as the API)
FOLDERS_MAX = 200  # folders of the user's server listed for one view


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


def ticked(values: Iterable[str], what: str) -> list[str]:
    """The notebooks a form's checkboxes chose (``values``: the repeated field), in
    order, each once; `Refused` (422) for none or more than PATHS_MAX. Pure."""
    paths = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if not paths:
        raise Refused(422, f"Tick at least one notebook to {what}.")
    if len(paths) > PATHS_MAX:
        raise Refused(422, f"Tick at most {PATHS_MAX} notebooks at once.")
    return paths


def commit_message(value: str) -> str:
    """A commit message from the form; `Refused` (422) for a blank or too long one. Pure."""
    if not value.strip():
        raise Refused(422, "Say in the message what the commit changes.")
    if len(value) > MESSAGE_MAX:
        raise Refused(422, f"The message may be at most {MESSAGE_MAX:,} characters.")
    return value


def notebook_rows(
    entries: Iterable[NotebookEntry], records: Iterable[ImportRecord], link: Link
) -> list[dict]:
    """The repository's notebooks as the link view lists them: path, where each goes
    in the server, and in words whether it was imported and changed since. Pure."""
    imported = {r.repo_path: r for r in records}
    rows = []
    for entry in entries:
        record = imported.get(entry.path)
        if record is None:
            state = "not imported yet"
        elif record.blob_id == entry.blob:
            state = "imported; unchanged in the repository since"
        else:
            state = "imported; changed in the repository since"
        rows.append(
            {
                "path": entry.path,
                "target": server_path(entry.path, link.folder, link.url),
                "imported": record is not None,
                "changed": record is not None and record.blob_id != entry.blob,
                "state": state,
            }
        )
    return rows


def alert_of(error: Exception) -> dict:
    """How the page shows an error: ``message`` (never a traceback; no message carries a
    token), ``kind`` (a Bootstrap alert: danger, or warning for a conflict, whose user
    version is safe on a branch) and ``start`` (the way out is starting the server).
    Pure."""
    start = isinstance(error, ServerNotRunning)
    if isinstance(error, VaultError | CredentialUnreadable):  # a stored token no key opens
        message = f"{error} Remove the link and add it again with the token."
    elif isinstance(error, Refused | GitSyncError | ContentsError):
        message = error.message
    else:
        message = "The Git service failed on this request (it is logged)."
    kind = "warning" if isinstance(error, MergeConflict) else "danger"
    return {"message": message, "kind": kind, "start": start}


def status_of(error: Exception) -> int:
    """The HTTP status the API answers ``error`` with. Pure."""
    if isinstance(error, Refused | GitSyncError | ContentsError):
        return error.status
    return 409 if isinstance(error, VaultError) else 500


async def server_notebooks(contents: ContentsClient, folder: str) -> tuple[list[str], bool]:
    """The ``.ipynb`` files under ``folder`` of the user's server, all its subfolders
    included (hidden ones not): their paths, and whether the listing is complete (at
    most FOLDERS_MAX folders are read). A missing folder holds none."""
    found, todo, read = [], [folder], 0
    while todo and read < FOLDERS_MAX:
        here, read = todo.pop(0), read + 1
        try:
            entries = await contents.list(here)
        except ContentsNotFound:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.type == "directory":
                todo.append(entry.path)
            elif entry.name.endswith(".ipynb"):
                found.append(entry.path)
    return sorted(found), not todo


class PageHandler(BaseHandler):
    """GET shows the page, or a link's view with ``?link=<id>``; POST applies one form
    (add, remove; import and commit in a link's view)."""

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
        sent = self.get_query_argument("link", None)
        if sent is None:
            return await self.render_page()
        try:
            link = await self.find_link(sent)
        except Refused as refused:
            return await self.render_page(refused.status, refused.message)
        try:
            server = server_argument(self.get_query_argument("server", ""))
        except Refused as refused:
            return await self.render_link(link, "", refused.status, {"alert": alert_of(refused)})
        await self.render_link(link, server)

    @web.authenticated
    async def post(self) -> None:
        action = self.get_body_argument("action", "")
        if action in ("import", "commit"):
            return await self.transfer(action)
        fields = {k: self.get_body_argument(k, "") for k in (*FORM_FIELDS, "token")}
        strip_outputs = bool(self.get_body_argument("strip_outputs", ""))
        shown = {k: fields[k] for k in FORM_FIELDS} | {"strip_outputs": strip_outputs}
        try:
            if action == "add":
                asked = new_link(link_form(fields, strip_outputs))
                link = await self.service.db(self.service.create_link, self.caller, asked)
                if link.public_key:  # an SSH link: its view shows the deploy key to add
                    return self.redirect(f"{self.request.path}?link={link.id}", status=303)
                return self._done("added", link.id)
            if action == "remove":
                sent = self.get_body_argument("id", "")
                number = parse_id(sent)
                if number is None:
                    raise Refused(404, f"You have no link {sent[:20]}.")
                link = await self.service.db(self.service.delete_link, self.caller, number)
                self.settings["transfers"].remove(link)  # its clone goes too, as the API's
                return self._done("removed", link.id)
            raise Refused(422, f"Unknown action {action[:40]!r}.")
        except Refused as refused:
            await self.render_page(refused.status, refused.message, shown)

    def _done(self, kind: str, link_id: int) -> None:
        self.redirect(
            f"{self.request.path}?{urlencode({'notice': kind, 'id': link_id})}", status=303
        )

    # -- a link's view: import and commit --------------------------------------------------

    async def find_link(self, sent: str) -> Link:
        """The link ``?link=`` names, if the caller may see it; `Refused` (404) if not."""
        number = parse_id(sent)
        if number is None:
            raise Refused(404, f"You have no link {sent[:20]}.")
        return await self.service.db(self.service.get_link, self.caller, number)

    async def transfer(self, action: str) -> None:
        """An import or a commit form's POST: done, then the link's view with what it did
        (or why it could not)."""
        try:
            link = await self.find_link(self.get_query_argument("link", ""))
        except Refused as refused:
            return await self.render_page(refused.status, refused.message)
        server, form = "", {"message": self.get_body_argument("message", "")}
        form["paths"] = self.get_body_arguments("path")
        form["targets"] = self.get_body_arguments("target")
        try:
            server = server_argument(self.get_body_argument("server", ""))
            if action == "import":
                outcome = await self.import_from(link, server, ticked(form["paths"], "import"))
            else:
                outcome = await self.commit_to(link, server, form)
            status = 200
        except (Refused, GitSyncError, ContentsError, VaultError) as error:
            status, outcome = status_of(error), {"alert": alert_of(error)}
            if isinstance(error, PushRejected):  # the page offers "pull and retry"
                outcome["retry"] = True
        await self.render_link(link, server, status, {**outcome, "form": form, "action": action})

    async def import_from(self, link: Link, server: str, paths: list[str]) -> dict:
        link = await self.service.db(self.service.own_link, self.caller, link.id)  # 403: admins
        contents = self.service.contents(self.caller, self.user_token(), server)
        steps = await self.settings["transfers"].import_notebooks(link, contents, paths)
        return {"steps": steps}

    async def commit_to(self, link: Link, server: str, form: dict) -> dict:
        targets, message = ticked(form["targets"], "commit"), commit_message(form["message"])
        link = await self.service.db(self.service.own_link, self.caller, link.id)  # 403: admins
        contents = self.service.contents(self.caller, self.user_token(), server)
        author = author_of(self.caller.name, (self.current_user or {}).get("user_info"))
        pull = self.get_body_argument("pull", "") == "true"
        done = await self.settings["transfers"].commit_notebooks(
            link, contents, targets, message, author, pull=pull
        )
        return {"committed": commit_words(link, done)}

    async def render_link(
        self, link: Link, server: str, status: int = 200, outcome: dict | None = None
    ) -> None:
        """The link's view: what it links, the repository's notebooks and the ones in the
        caller's server (both read now, each failure said in its own section)."""
        own = link.user == self.caller.name
        repository = mine = None
        if own:
            repository = await self.repository_section(link, server)
            mine = await self.server_section(link, server)
        html = self.env.get_template("link.html").render(
            **self.hub_context(),
            page_url=self.request.path,
            link=link,
            own=own,
            server=server,
            folder=repository_folder(link.url),
            repository=repository,
            mine=mine,
            outcome=outcome or {},
            iso=iso,
        )
        self.set_status(status)
        self.finish(html)

    async def repository_section(self, link: Link, server: str) -> dict:
        try:
            entries = await self.settings["transfers"].notebooks(link)
            records = await self.service.db(self.service.store.imports, link.id, server)
        except (GitSyncError, VaultError) as error:
            return {"alert": alert_of(error), "rows": []}
        return {"rows": notebook_rows(entries, records, link)}

    async def server_section(self, link: Link, server: str) -> dict:
        contents = self.service.contents(self.caller, self.user_token(), server)
        try:
            paths, complete = await server_notebooks(contents, repository_folder(link.url))
        except ContentsError as error:
            return {"alert": alert_of(error), "paths": [], "complete": True}
        return {"paths": paths, "complete": complete}

"""The Git service's HTTP side: a JupyterHub service with a REST API and a web page.

Authenticated by hub OAuth (browsers) or ``Authorization: token <hub token>`` (API
clients). The handlers read requests and write responses; what they decide with is
`service.Service`. Request bodies are never logged: they carry tokens.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml
from jupyterhub.services.auth import HubOAuthCallbackHandler
from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from aglais_hub.reservations.rules import Refused, check_user_name
from aglais_hub.serviceapi import HubServiceHandler, JsonApiHandler, with_error_responses

from .contents import ContentsError, server_label
from .errors import GitSyncError, MergeConflict, PushRejected
from .rules import link_changes, new_link
from .service import Caller, Service
from .sync import server_path
from .transfer import Transfers, author_of, chosen_paths, commit_words
from .vault import VaultError

log = logging.getLogger("aglais.gitsync")
UNAVAILABLE = "The Git service's database is not answering right now; try again shortly."
# JupyterHub 6's named servers: 1-30 of [a-z0-9-], starting with a letter ("" the default)
SERVER_NAME = re.compile(r"^([a-z][a-z0-9-]{0,29})?$")


class BaseHandler(HubServiceHandler):
    """Who calls (`caller`), from the hub's OAuth cookie or an API token."""

    title = "the Git service"
    service: Service
    caller: Caller | None = None

    async def resolve_caller(self, model: dict) -> Caller:
        return Caller.from_model(model)

    def user_token(self) -> str:
        """The caller's own hub token: the API token it sent, or its OAuth login's (the
        cookie). It reaches the caller's servers only (contents.py says why)."""
        return self.hub_auth.get_token(self) or ""


class ApiHandler(BaseHandler, JsonApiHandler):
    """The Git API's handlers: `serviceapi.JsonApiHandler`'s error rules, with the
    service's database as what may be away."""

    realm = "gitsync"

    def unavailable(self, error: BaseException) -> str | None:
        return UNAVAILABLE if isinstance(error, SQLAlchemyError) else None

    async def run(self, fn: Callable, *args: Any) -> Any:
        """A service call in the database pool; `Refused` becomes its status and message
        (and None is returned: the response is written)."""
        try:
            return await self.service.db(fn, *args)
        except Refused as refused:
            self.refuse(refused.status, refused.message)
        except VaultError as error:  # a stored token no key opens: the user enters it again
            self.refuse(409, str(error))
        return None


class HealthHandler(ApiHandler):
    needs_login = False

    def get(self) -> None:
        self.json(200, {"status": "ok"})


class LinksHandler(ApiHandler):
    async def get(self) -> None:
        user = self.get_argument("user", None)
        try:
            if user is not None:
                check_user_name(user)
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        links = await self.run(self.service.list_links, self.caller, user)
        if links is not None:
            self.json(200, {"links": [link.as_json() for link in links]})

    async def post(self) -> None:
        try:
            asked = new_link(self.body())
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        link = await self.run(self.service.create_link, self.caller, asked)
        if link is not None:
            self.set_header("Location", f"{self.request.path.rstrip('/')}/{link.id}")
            self.json(201, link.as_json())


class LinkHandler(ApiHandler):
    noun = "link"

    async def get(self, link_id: str) -> None:
        if (number := self.path_id(link_id)) is None:
            return
        link = await self.run(self.service.get_link, self.caller, number)
        if link is not None:
            self.json(200, link.as_json())

    async def patch(self, link_id: str) -> None:
        if (number := self.path_id(link_id)) is None:
            return
        # whose link it is first: another user's link is a 404 whatever the body says
        if await self.run(self.service.own_link, self.caller, number) is None:
            return
        try:
            changes = link_changes(self.body())
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        link = await self.run(self.service.change_link, self.caller, number, changes)
        if link is not None:
            self.json(200, link.as_json())

    async def delete(self, link_id: str) -> None:
        if (number := self.path_id(link_id)) is None:
            return
        link = await self.run(self.service.delete_link, self.caller, number)
        if link is not None:
            self.settings["transfers"].remove(link)  # its clone goes too
            self.json(200, link.as_json())


def server_argument(value: object) -> str:
    """A server name from a query or a body ("" the default server); `Refused` (422)."""
    if not isinstance(value, str) or not SERVER_NAME.match(value):
        raise Refused(422, "'server' must be a server name ([a-z0-9-], 1-30) or empty.")
    return value


class TransferHandler(LinkHandler):
    """The caller's own link, its working copy and their server: import and commit.
    A git or server error is answered with its status and words."""

    @property
    def transfers(self) -> Transfers:
        return self.settings["transfers"]

    async def own(self, link_id: str) -> object | None:
        if (number := self.path_id(link_id)) is None:
            return None
        return await self.run(self.service.own_link, self.caller, number)

    def failed(self, error: GitSyncError | ContentsError) -> None:
        body: dict[str, Any] = {"status": error.status, "message": error.message}
        if isinstance(error, MergeConflict):
            body.update(saved_branch=error.saved_branch, paths=list(error.paths))
        if isinstance(error, PushRejected):
            body["retry"] = "pull"  # the page offers "pull and retry": the same call, pull: true
        self.status_headers(error.status)
        self.json(error.status, body)


class NotebooksHandler(TransferHandler):
    """The Jupyter notebooks under the link's folder (fetched now), each with where it
    goes in the caller's server and whether it was imported there."""

    async def get(self, link_id: str) -> None:
        try:
            server = server_argument(self.get_argument("server", ""))
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        if (link := await self.own(link_id)) is None:
            return
        try:
            entries = await self.transfers.notebooks(link)
        except GitSyncError as error:
            return self.failed(error)
        records = await self.run(self.service.store.imports, link.id, server)
        imported = {r.repo_path: r for r in records or []}
        self.json(
            200,
            {
                "link": link.id,
                "notebooks": [
                    {
                        "path": e.path,
                        "target": server_path(e.path, link.folder, link.url),
                        "imported": e.path in imported,
                        "changed_since_import": e.path in imported
                        and imported[e.path].blob_id != e.blob,
                    }
                    for e in entries
                ],
            },
        )


class ImportHandler(TransferHandler):
    async def post(self, link_id: str) -> None:
        try:
            data = self.body()
            paths = chosen_paths(data)
            server = server_argument(data.get("server", ""))
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        if (link := await self.own(link_id)) is None:
            return
        contents = self.service.contents(self.caller, self.user_token(), server)
        try:
            steps = await self.transfers.import_notebooks(link, contents, paths)
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        except (GitSyncError, ContentsError) as error:
            return self.failed(error)
        self.json(200, {"link": link.id, "steps": [step.as_json() for step in steps]})


class CommitHandler(TransferHandler):
    async def post(self, link_id: str) -> None:
        try:
            data = self.body()
            paths = chosen_paths(data)
            server = server_argument(data.get("server", ""))
            message = data.get("message")
            if not isinstance(message, str) or not message.strip() or len(message) > 10_000:
                raise Refused(
                    422, "'message' must say what the commit changes (10,000 characters at most)."
                )
            pull = data.get("pull", False)
            if not isinstance(pull, bool):
                raise Refused(422, "'pull' must be true or false.")
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        if (link := await self.own(link_id)) is None:
            return
        contents = self.service.contents(self.caller, self.user_token(), server)
        author = author_of(self.caller.name, (self.current_user or {}).get("user_info"))
        try:
            done = await self.transfers.commit_notebooks(
                link, contents, paths, message, author, pull=pull
            )
        except Refused as refused:
            return self.refuse(refused.status, refused.message)
        except (GitSyncError, ContentsError) as error:
            return self.failed(error)
        self.json(200, {"link": link.id, **done.as_json(commit_words(link, done))})


class ServerHandler(ApiHandler):
    """Whether the service can reach the caller's server with the caller's login: the
    way imports and commits will reach it, tried on the server's top folder."""

    async def get(self) -> None:
        server = self.get_argument("server", "")
        if not SERVER_NAME.match(server):
            return self.refuse(422, "'server' must be a server name ([a-z0-9-], 1-30) or empty.")
        contents = self.service.contents(self.caller, self.user_token(), server)
        try:
            entries = await contents.list("")
        except ContentsError as error:
            return self.refuse(error.status, error.message)
        self.json(
            200,
            {
                "user": self.caller.name,
                "server": server,
                "label": server_label(server),
                "reachable": True,
                "items": len(entries),
            },
        )


@functools.cache
def openapi_document() -> dict:
    """openapi.yaml, every operation listing the errors every route answers
    (`serviceapi.with_error_responses`)."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text()
    return with_error_responses(yaml.safe_load(text))


class OpenApiHandler(ApiHandler):
    """openapi.yaml, with this service's prefix."""

    needs_login = False

    def get(self) -> None:
        spec = copy.deepcopy(openapi_document())
        spec["servers"] = [{"url": self.settings["service_prefix"]}]
        self.json(200, spec)


class NotFoundHandler(ApiHandler):
    """Any other path under api/: a JSON 404, not tornado's HTML page."""

    needs_login = False

    async def prepare(self) -> None:
        raise web.HTTPError(404, "There is no such API route; see api/openapi.json.")


def make_app(
    service: Service, prefix: str, cookie_secret: bytes, page_handlers: list | None = None
) -> web.Application:
    """The tornado application, every route under the service ``prefix``."""
    prefix = "/" + prefix.strip("/") + "/"
    kwargs = {"service": service}
    routes = [
        (prefix + "api/health", HealthHandler, kwargs),
        (prefix + "api/openapi.json", OpenApiHandler, kwargs),
        (prefix + "api/links", LinksHandler, kwargs),
        (prefix + r"api/links/(\d+)", LinkHandler, kwargs),
        (prefix + r"api/links/(\d+)/notebooks", NotebooksHandler, kwargs),
        (prefix + r"api/links/(\d+)/import", ImportHandler, kwargs),
        (prefix + r"api/links/(\d+)/commit", CommitHandler, kwargs),
        (prefix + "api/server", ServerHandler, kwargs),
        (prefix + "api/.*", NotFoundHandler, kwargs),  # after every API route
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        *((prefix + path, handler, kwargs) for path, handler in (page_handlers or [])),
    ]
    return web.Application(
        routes,
        service_prefix=prefix,
        cookie_secret=cookie_secret,  # signs HubOAuth's token cookie
        transfers=Transfers(service),
    )

"""What the platform's hub services (reservations, gitsync) share at their HTTP door.

Each is a JupyterHub service authenticated by hub OAuth (browsers) or ``Authorization:
token <hub token>`` (API clients), and answers its API in JSON with one set of error
rules: every error is ``{"status", "message"}``; 401 (with ``WWW-Authenticate``)
without a valid login or token, 403 for one without the scope, 405 with ``Allow``,
413/415/422 for bodies not read, 503 with ``Retry-After`` while something it depends on
(its database, the hub) is away. The rules are here once; a service's handlers set
its name (`HubServiceHandler.title`, ``realm``), how a hub user becomes its caller
(`HubServiceHandler.resolve_caller`) and what counts as "away" (``unavailable``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from aglais_hub.reservations.rules import Refused, parse_id

log = logging.getLogger("aglais.services")
BODY_MAX = 64 * 1024  # bytes: the largest request body an API reads (413 beyond)
BODY_HARD_MAX = 1024 * 1024  # the servers drop bigger bodies unread
JSON_DEPTH_MAX = 32  # nesting levels of a request body (ours need 1 or 2)
RETRY_AFTER = "5"  # seconds, on every 503


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_depth(data: Any) -> int:
    """How deep ``data`` nests (``{}`` and ``[]`` are 1), without recursion; stops past the
    limit."""
    deepest, stack = 0, [(data, 1)]
    while stack and deepest <= JSON_DEPTH_MAX:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_body(raw: bytes) -> Any:
    """A request body: at most `BODY_MAX` bytes (413) of UTF-8 JSON, nested at most
    `JSON_DEPTH_MAX` deep, without lone surrogates (422). Linear in the body's size."""
    if len(raw) > BODY_MAX:
        raise Refused(413, f"The request body is larger than {BODY_MAX} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(422, "The request body is not UTF-8.") from None
    too_deep = f"The request body nests JSON deeper than {JSON_DEPTH_MAX} levels."
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # the C decoder's own guard, near a thousand levels
        raise Refused(422, too_deep) from None
    except ValueError:  # JSONDecodeError, NaN, 5000-digit numbers
        raise Refused(422, "The request body is not JSON.") from None
    if json_depth(data) > JSON_DEPTH_MAX:
        raise Refused(422, too_deep)
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(
            422, "The request body holds a lone surrogate (such as \\ud800), which is not text."
        ) from None
    return data


METHODS = ("get", "put", "post", "patch", "delete")
ERRORS_REF = "#/components/responses/"


def with_error_responses(spec: dict) -> dict:
    """An OpenAPI document with, on every operation, the errors `JsonApiHandler` answers
    for all routes: 400 (tornado's, for a Content-Type it cannot parse, such as multipart
    without a boundary), 401/403/503 where a login is needed, 413/415/422 with a body,
    422 with query parameters. The document names its responses Unauthorized,
    Unavailable and Error. Changes ``spec`` in place and returns it."""
    refs = {"401": "Unauthorized", "503": "Unavailable"}
    for item in spec["paths"].values():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            codes = ["400"]
            if operation.get("security", spec.get("security")):
                codes += ["401", "403", "503"]
            if "requestBody" in operation:
                codes += ["413", "415", "422"]
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                codes.append("422")
            for code in codes:
                ref = ERRORS_REF + refs.get(code, "Error")
                operation["responses"].setdefault(code, {"$ref": ref})
    return spec


class HubServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Who calls (``caller``), from the hub's OAuth cookie or an API token."""

    title = "the service"  # how messages name it: "the reservation service"
    service: Any
    caller: Any = None
    not_allowed = False  # a valid login or token without the scope to use this service

    def initialize(self, service: Any) -> None:
        self.service = service

    async def resolve_caller(self, model: dict) -> Any:
        """The service's caller for the hub's identify ``model`` (subclasses)."""
        raise NotImplementedError

    async def prepare(self) -> None:
        # HubAuth's own get_current_user would block the loop on a token lookup: look the
        # token up here, asynchronously, and set current_user (tornado's way for an async
        # lookup), which @web.authenticated and the XSRF cookie then read
        model = None
        try:
            found = await self.hub_auth.get_user(self, sync=False)
            model = self.check_hub_user(found) if found else None
            self.caller = await self.resolve_caller(model) if model else None
        except UserNotAllowed:
            model, self.not_allowed = None, True
        except web.HTTPError as error:  # HubAuth's own: the hub did not answer the token check
            if error.status_code < 500:
                raise
            raise web.HTTPError(
                503, f"The hub is not answering {self.title} right now; try again shortly."
            ) from error
        self.current_user = model

    def json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class JsonApiHandler(HubServiceHandler):
    """JSON in, JSON out; errors are ``{"status", "message"}``, whatever went wrong (the
    module's docstring lists them)."""

    needs_login = True
    realm = "service"  # WWW-Authenticate's realm on a 401
    noun = "item"  # what an id in the path names, in a 404 ("You have no booking 7.")

    def unavailable(self, error: BaseException) -> str | None:
        """What is away when ``error`` is a dependency's fault (a 503), else None."""
        return None

    async def prepare(self) -> None:
        if not self.needs_login:
            return  # health, the document, metrics: no token lookup (and no hub) needed
        await super().prepare()
        if self.caller is None:
            if self.not_allowed:
                raise web.HTTPError(
                    403, f"This login or token may not use {self.title} (it lacks the scope)."
                )
            raise web.HTTPError(
                401, "Log in to the hub, or send 'Authorization: token <hub token>'."
            )

    def refuse(self, status: int, message: str) -> None:
        """Answer ``{"status", "message"}`` with that status (and the headers it needs)."""
        self.status_headers(status)
        self.json(status, {"status": status, "message": message})

    def path_id(self, text: str) -> int | None:
        """The id from the path; None (and a 404 naming the ``noun``) for one nothing can
        have, so a malformed id reads like an unknown one."""
        number = parse_id(text)
        if number is None:
            self.refuse(404, f"You have no {self.noun} {text[:20]}.")
        return number

    def body(self) -> dict:
        """The request's JSON object (`parse_json_body`'s limits; 415 for other media)."""
        media = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise Refused(415, f"Send the body as application/json, not {media[:60]}.")
        data = parse_json_body(self.request.body or b"{}")
        if not isinstance(data, dict):
            raise Refused(422, "The request body must be a JSON object.")
        return data

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:  # tornado's own answer would be a 400
            raise web.HTTPError(
                422, f"The {'parameter ' + repr(name) if name else 'path'} is not UTF-8."
            ) from None

    def allowed_methods(self) -> list[str]:
        """The methods this route answers (the ``Allow`` of a 405)."""
        base = web.RequestHandler
        return [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(type(self), m.lower()) is not getattr(base, m.lower())
        ]

    def status_headers(self, status: int) -> None:
        """The headers a status needs: WWW-Authenticate, Allow, Retry-After."""
        if status == 401:
            self.set_header("WWW-Authenticate", f'token realm="{self.realm}"')
        elif status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        elif status == 503:
            self.set_header("Retry-After", RETRY_AFTER)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if value is not None and not isinstance(value, web.HTTPError) and self.unavailable(value):
            log.warning(
                "503 for %s %s: %s",
                self.request.method,
                self.request.path,
                str(value).splitlines()[0] if str(value) else typ.__name__,
            )
            return  # a dependency away is no bug: one line, not a traceback
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        error = (kwargs.get("exc_info") or (None, None))[1]
        if isinstance(error, web.HTTPError):
            message = error.log_message or message
            if status_code == 405:
                message = (
                    f"{self.request.method} is not allowed here; "
                    f"use {', '.join(self.allowed_methods())}."
                )
        elif error is not None and self.unavailable(error):
            status_code, message = 503, self.unavailable(error)
            self.set_status(503)
        elif status_code >= 500:
            message = (
                f"{self.title[0].upper()}{self.title[1:]} failed on this request (it is logged)."
            )
        self.status_headers(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

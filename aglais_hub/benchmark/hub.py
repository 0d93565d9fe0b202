"""The hub's REST API as one user sees it with an API token: who the token belongs to,
starting one of the user's servers (the default one, or a named one such as a booking's
``r12``) and following the hub's progress events until it is
``ready`` (or ``failed``, with the spawner's message: a tier's quota, a booking, the
queue for capacity), and stopping it again — only if the benchmark started it.

Every failure is a `HubError` with one line for a reader: `HubUnreachable`,
`TokenRefused`, `SpawnRefused`, `StartTimeout`. `Api` (JSON over tornado's HTTP client,
token in the ``Authorization`` header) is shared with the notebook drivers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

REQUEST_TIMEOUT = 60.0
DEFAULT_START_TIMEOUT = 600.0  # as long as the spawn gate's queue holds a spawn
STOP_TIMEOUT = 120.0
POLL_SECONDS = 1.0


class HubError(Exception):
    """Something the hub (or a server behind it) did not do; the message is one line."""


class Unreachable(HubError):
    """Nothing answers at ``url``: refused, timed out, a name that does not resolve."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url, self.reason = url, reason


class HubUnreachable(HubError):
    """The hub itself does not answer, or does not answer as a JupyterHub."""


class TokenRefused(HubError):
    """The hub refused a user's API token (401/403), or it is another user's."""


class SpawnRefused(HubError):
    """The hub or the spawner refused to start the server, in the spawner's words."""


class StartTimeout(HubError):
    """The server was not ready in time."""


@dataclass(frozen=True)
class Response:
    """An HTTP answer: its status and body."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        """The body as JSON; None when empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def message(self) -> str:
        """The error message of a JupyterHub or Jupyter Server answer, else its status."""
        body = self.json()
        message = body.get("message") if isinstance(body, dict) else None
        return f"{self.status}: {message}" if message else f"HTTP {self.status}"


def _reason(error: Exception) -> str:
    """Why a connection failed, without errno clutter."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


class Api:
    """JSON requests to ``base_url`` (a hub's or a user server's) with an API token."""

    def __init__(self, http: AsyncHTTPClient, base_url: str, token: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/") + "/"
        self.token = token

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}", "Accept": "application/json"}

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        timeout: float = REQUEST_TIMEOUT,
        streaming_callback: Callable[[bytes], None] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> Response:
        """One request (with extra ``headers``); any status comes back as a Response, a
        failed connection (or no answer within ``timeout``) raises Unreachable."""
        url = self.url(path)
        headers = {**self.headers(), **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            data = ""  # tornado wants a body with these
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=data,
            connect_timeout=min(timeout, 20.0),
            request_timeout=timeout,
            streaming_callback=streaming_callback,
            follow_redirects=follow_redirects,
        )
        try:
            response = await self.http.fetch(request, raise_error=False)
        except HTTPClientError as error:  # 599: timeouts, closed streams
            raise Unreachable(url, error.message or "no answer") from None
        except OSError as error:
            raise Unreachable(url, _reason(error)) from None
        return Response(response.code, response.body or b"")


@dataclass(frozen=True)
class UserServer:
    """A user's running server, as the benchmark reaches it."""

    user: str
    url: str  # absolute, ends in /
    token: str
    started: bool  # by the benchmark, which then stops it at the end
    name: str = ""  # the server's name: "" for the default server, r12 for booking 12's


def hub_base(url: str) -> str:
    """The hub's public URL as given, without a trailing ``hub/`` (both are accepted)."""
    base = url.rstrip("/")
    if base.endswith("/hub"):
        base = base[: -len("/hub")]
    return base + "/"


def valid_hub_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def progress_events(buffer: str) -> tuple[list[dict], str]:
    """The complete server-sent events in ``buffer`` (their ``data:`` JSON) and what is
    left of it after them."""
    *complete, rest = buffer.replace("\r\n", "\n").split("\n\n")
    events = []
    for block in complete:
        data = "\n".join(line[5:].strip() for line in block.split("\n") if line.startswith("data:"))
        if data:
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events, rest


def server_path(user: str, server_name: str = "") -> str:
    """The hub's API path of a user's server: ``hub/api/users/alice/server`` for the
    default one, ``hub/api/users/alice/servers/r12`` for a named one. Pure."""
    user_path = f"hub/api/users/{quote(user, safe='')}"
    if not server_name:
        return f"{user_path}/server"
    return f"{user_path}/servers/{quote(server_name, safe='')}"


def server_label(user: str, server_name: str = "") -> str:
    """``alice's server`` or ``alice's server r12``, for messages. Pure."""
    return f"{user}'s server" + (f" {server_name}" if server_name else "")


class UserHub:
    """The hub as ``user`` with ``token``, for one of the user's servers: ``server_name``
    ("" is the default server; a booking's server runs the booked size, flavour and all,
    as the spawn gate tells the spawner)."""

    def __init__(
        self,
        http: AsyncHTTPClient,
        hub_url: str,
        user: str,
        token: str,
        server_name: str = "",
    ) -> None:
        self.hub_url = hub_base(hub_url)
        self.user = user
        self.server_name = server_name
        self.api = Api(http, self.hub_url, token)
        self.user_path = f"hub/api/users/{quote(user, safe='')}"
        self.server_path = server_path(user, server_name)
        self.label = server_label(user, server_name)

    async def _get(self, path: str) -> Response:
        try:
            return await self.api.request("GET", path)
        except Unreachable as error:
            raise HubUnreachable(
                f"cannot reach the hub at {self.hub_url}: {error.reason}"
            ) from None

    async def whoami(self) -> dict:
        """The token's user model; TokenRefused when it is refused or someone else's."""
        response = await self._get("hub/api/user")
        if response.status in (401, 403):
            raise TokenRefused(
                f"the hub refused the token of {self.user} ({response.status}): "
                "check the tokens file (a token may have expired or been revoked)"
            )
        model = response.json()
        if not response.ok or not isinstance(model, dict) or "name" not in model:
            raise HubUnreachable(
                f"{self.hub_url} does not answer as a JupyterHub "
                f"(hub/api/user gave {response.message()})"
            )
        if model["name"] != self.user:
            raise TokenRefused(
                f"the token given for {self.user} belongs to {model['name']}: check the tokens file"
            )
        return model

    async def server_model(self) -> dict | None:
        """The hub's model of the server; None when it does not run (nor start, nor stop)."""
        response = await self._get(self.user_path)
        model = response.json()
        if not response.ok or not isinstance(model, dict):
            raise HubError(f"the hub did not give {self.user}'s model: {response.message()}")
        servers = model.get("servers") or {}
        return servers.get(self.server_name)

    def _server(self, model: dict, started: bool) -> UserServer:
        parts = urlsplit(self.hub_url)
        url = urljoin(f"{parts.scheme}://{parts.netloc}", model.get("url") or "")
        return UserServer(
            self.user, url.rstrip("/") + "/", self.api.token, started, self.server_name
        )

    async def start_server(self, timeout: float = DEFAULT_START_TIMEOUT) -> UserServer:
        """The server, started unless it runs already, once the hub says it is ready.
        SpawnRefused with the spawner's message, StartTimeout after ``timeout`` seconds (a
        spawn this started is then stopped, as it is when the wait is cancelled)."""
        deadline = time.monotonic() + timeout
        model = await self.server_model()
        while model and model.get("pending") == "stop":  # started again once stopped
            if time.monotonic() > deadline:
                raise StartTimeout(f"{self.label} was still stopping after {timeout:g} s")
            await asyncio.sleep(POLL_SECONDS)
            model = await self.server_model()
        if model and model.get("ready"):
            return self._server(model, started=False)
        started = not (model and model.get("pending") == "spawn")
        if started:
            response = await self.api.request("POST", self.server_path)
            if response.status == 400 and b"already running" in response.body:
                started = False  # someone else started it a moment ago
            elif not response.ok:
                raise SpawnRefused(f"the hub refused to start {self.label}: {response.message()}")
        try:
            return await self._wait_ready(deadline, timeout, started)
        except StartTimeout:
            if started:
                await self.stop_server(STOP_TIMEOUT, wait=False)
            raise
        except asyncio.CancelledError:  # Ctrl-C, or another user's task broke
            if started:  # the stop interrupts the pending spawn; wait: nothing left running
                await self.stop_server(STOP_TIMEOUT)
            raise

    async def _wait_ready(self, deadline: float, timeout: float, started: bool) -> UserServer:
        last: dict = {}
        while True:
            model = await self.server_model()
            if model and model.get("ready"):
                return self._server(model, started)
            if not model or not model.get("pending"):
                if not last:  # it failed before we looked: the progress stream says why
                    last = await self._follow_progress(min(REQUEST_TIMEOUT, 10.0))
                reason = last.get("message") or "the hub gave no reason"
                raise SpawnRefused(f"{self.label} did not start: {reason}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = last.get("message") or "none"
                raise StartTimeout(
                    f"{self.label} was not ready after {timeout:g} s (last progress: {shown})"
                )
            event = await self._follow_progress(remaining)
            last = event or last
            if event.get("failed"):
                raise SpawnRefused(
                    f"{self.label} did not start: {event.get('message') or 'failed'}"
                )
            if not event.get("ready"):  # the stream ended early: look again in a moment
                await asyncio.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))

    async def _follow_progress(self, remaining: float) -> dict:
        """Read the hub's progress events until the stream ends (it does after ``ready``
        or ``failed``) or ``remaining`` seconds pass; the last event (empty if none)."""
        # not the model's progress_url: an absolute path, which would repeat the prefix
        # of a hub served under one
        path = f"{self.server_path}/progress"
        buffer, last = "", {}

        def take(chunk: bytes) -> None:
            nonlocal buffer, last
            events, buffer = progress_events(buffer + chunk.decode(errors="replace"))
            if events:
                last = events[-1]

        try:
            await self.api.request("GET", path, timeout=remaining, streaming_callback=take)
        except Unreachable:
            pass  # timed out (the caller says so) or the hub went away (its next call says so)
        return last

    async def stop_server(self, timeout: float = STOP_TIMEOUT, wait: bool = True) -> str | None:
        """Stop the server (a named one is kept, stopped); None when it stopped (or was
        not running), else why not (a warning)."""
        try:
            response = await self.api.request("DELETE", self.server_path)
            if response.status not in (202, 204, 400, 404):
                return f"the hub did not stop {self.label}: {response.message()}"
            deadline = time.monotonic() + timeout
            while wait:
                model = await self.server_model()
                if not model or (not model.get("pending") and not model.get("ready")):
                    return None
                if time.monotonic() > deadline:
                    return f"{self.label} was still stopping after {timeout:g} s"
                await asyncio.sleep(POLL_SECONDS)
        except HubError as error:
            return f"{self.label} may still run: {error}"
        return None

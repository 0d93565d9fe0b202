"""Tornado handlers and the application of the auth proxy."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpclient, web, websocket
from tornado.httputil import HTTPHeaders

from .notices import SCRIPT as NOTICE_SCRIPT
from .notices import NoticeSource, inject_script

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
STARTING_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="3"><title>Starting Zeppelin</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:4em auto">
<h1>Zeppelin is starting</h1><p>Your notebook server is up; Zeppelin itself is still
booting (this takes up to a minute). This page reloads by itself.</p></body></html>"""


@dataclass
class ProxyState:
    """What the handlers share: where Zeppelin is, activity, the volume."""

    upstream: str
    prefix: str
    volume: Path | None = None
    quota_bytes: int = 0
    spark_ui: str = ""  # the driver's monitoring API: running jobs count as activity
    last_activity: float = 0.0
    open_sockets: int = 0
    reported: float = 0.0
    client: httpclient.AsyncHTTPClient = field(default_factory=httpclient.AsyncHTTPClient)
    notices: NoticeSource | None = None  # a booking's server: its end-of-booking notices

    def touch(self) -> None:
        self.last_activity = time.time()


def disk_usage(path: Path) -> int:
    """Bytes used by the files under ``path`` (as `du` would count them)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


class Base(HubOAuthenticated, web.RequestHandler):
    def initialize(self, state: ProxyState, hub_auth: HubOAuth) -> None:
        self.state = state
        self.hub_auth = hub_auth


class HealthHandler(web.RequestHandler):
    """Unauthenticated readiness: the proxy is up (Zeppelin may still be starting)."""

    def initialize(self, state: ProxyState) -> None:
        self.state = state

    async def get(self) -> None:
        self.finish(
            {"proxy": "ok", "zeppelin": "up" if await upstream_up(self.state) else "starting"}
        )


async def upstream_up(state: ProxyState) -> bool:
    try:
        response = await state.client.fetch(
            state.upstream + state.prefix.rstrip("/") + "/api/version",
            raise_error=False,
            request_timeout=2,
        )
    except OSError:
        return False
    return response.code < 500 and response.code != 599


class UsageHandler(Base):
    """The volume's disk usage against its quota, for the owner."""

    @web.authenticated
    def get(self) -> None:
        used = disk_usage(self.state.volume) if self.state.volume else 0
        self.finish(
            {
                "used_bytes": used,
                "quota_bytes": self.state.quota_bytes,
                "path": str(self.state.volume or ""),
            }
        )


class ProxyHandler(Base):
    """Forward any authenticated HTTP request to Zeppelin."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def check_xsrf_cookie(self) -> None:  # Zeppelin does its own; the hub cookie gates access
        pass

    @web.authenticated
    async def prepare(self) -> None:
        self.state.touch()
        await self.forward()

    async def forward(self) -> None:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in HOP_BY_HOP and name.lower() != "cookie":
                headers.add(name, value)
        # the notebook's own cookies pass (JupyterLab's _xsrf); the hub's login does not
        cookies = [f"{k}={m.value}" for k, m in self.request.cookies.items()
                   if not k.startswith(self.hub_auth.cookie_name)]  # fmt: skip
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        request = httpclient.HTTPRequest(
            self.state.upstream + self.request.uri,
            method=self.request.method,
            headers=headers,
            body=self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None,
            follow_redirects=False,
            request_timeout=300,
            allow_nonstandard_methods=True,
        )
        try:
            response = await self.state.client.fetch(request, raise_error=False)
        except OSError:
            response = None
        if response is None or response.code == 599:
            return self.starting()
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            if name.lower() not in HOP_BY_HOP:
                self.add_header(name, value)
        body = response.body
        if body and self.wants_notice_bar(response):
            body = inject_script(body, url_path_join(self.state.prefix, "_aglais/notice.js"))
        if body:
            self.write(body)
        self.finish()

    def wants_notice_bar(self, response: httpclient.HTTPResponse) -> bool:
        """A page (not an API answer) of a booking's server."""
        html = "text/html" in response.headers.get("Content-Type", "")
        return bool(self.state.notices) and self.request.method == "GET" and html

    def starting(self) -> None:
        """Zeppelin is not listening yet: say so (the hub's own check must pass)."""
        api_check = self.request.path.rstrip("/") == self.state.prefix.rstrip("/") + "/api"
        if api_check:
            self.finish({"starting": True})
        elif "text/html" in self.request.headers.get("Accept", ""):
            self.set_header("Retry-After", "3")
            self.finish(STARTING_PAGE)
        else:
            self.set_status(503)
            self.set_header("Retry-After", "3")
            self.finish({"message": "Zeppelin is starting; retry in a few seconds"})


class WebSocketProxy(HubOAuthenticated, websocket.WebSocketHandler):
    """Forward an authenticated WebSocket (Zeppelin's /ws) frame by frame."""

    def initialize(self, state: ProxyState, hub_auth: HubOAuth) -> None:
        self.state = state
        self.hub_auth = hub_auth
        self.upstream: websocket.WebSocketClientConnection | None = None

    def check_origin(self, origin: str) -> bool:
        return True  # the hub's OAuth cookie, not the origin, decides access

    @web.authenticated
    async def get(self, *args: str) -> None:
        await super().get(*args)

    async def open(self, *args: str) -> None:
        url = self.state.upstream.replace("http", "ws", 1) + self.request.uri
        try:
            self.upstream = await websocket.websocket_connect(url)
        except OSError:
            self.close(1013, "Zeppelin is starting")
            return
        self.state.open_sockets += 1
        asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        assert self.upstream is not None
        while True:
            message = await self.upstream.read_message()
            if message is None:
                self.close()
                return
            self.state.touch()
            await self.write_message(message, binary=isinstance(message, bytes))

    async def on_message(self, message: str | bytes) -> None:
        self.state.touch()
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.state.open_sockets -= 1
            self.upstream.close()


async def running_spark_jobs(state: ProxyState) -> int:
    """Jobs running in the pod's Spark driver (Spark's monitoring REST API), 0 if none
    or if no driver is up."""
    if not state.spark_ui:
        return 0
    try:
        apps = await state.client.fetch(f"{state.spark_ui}/api/v1/applications", request_timeout=2)
        running = 0
        for app in json.loads(apps.body):
            jobs = await state.client.fetch(
                f"{state.spark_ui}/api/v1/applications/{app['id']}/jobs?status=running",
                request_timeout=2,
            )  # fmt: skip
            running += len(json.loads(jobs.body))
        return running
    except (OSError, httpclient.HTTPClientError, ValueError, KeyError):
        return 0


async def report_activity(state: ProxyState, hub_auth: HubOAuth, interval: float) -> None:
    """Tell the hub when this server was last really used (requests, frames, open sockets)."""
    user = os.environ.get("JUPYTERHUB_USER", "")
    server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    url = url_path_join(hub_auth.api_url, "users", user, "activity")
    while True:
        await asyncio.sleep(interval)
        if state.open_sockets or await running_spark_jobs(state):
            state.touch()
        if state.last_activity <= state.reported:
            continue
        stamp = datetime.fromtimestamp(state.last_activity, UTC).isoformat().replace("+00:00", "Z")
        body = json.dumps({"servers": {server: {"last_activity": stamp}}, "last_activity": stamp})
        try:
            await state.client.fetch(
                url,
                method="POST",
                body=body,
                headers={"Authorization": f"token {hub_auth.api_token}"},
                request_timeout=10,
            )
            state.reported = state.last_activity
        except (OSError, httpclient.HTTPClientError):
            pass  # the hub may be restarting; the next round retries


class NoticeHandler(Base):
    """The booking's notices for the page's bar (the server's owner only)."""

    @web.authenticated
    async def get(self) -> None:
        found = await self.state.notices.fetch(self.state.client) if self.state.notices else []
        self.finish({"notices": found})


class NoticeScriptHandler(web.RequestHandler):
    """The script the proxy adds to Zeppelin's pages (static, no secrets)."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/javascript")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(NOTICE_SCRIPT)


def make_app(state: ProxyState, hub_auth: HubOAuth) -> web.Application:
    prefix = state.prefix.rstrip("/")
    args = {"state": state, "hub_auth": hub_auth}
    return web.Application(
        [
            (f"{prefix}/_aglais/health", HealthHandler, {"state": state}),
            (f"{prefix}/_aglais/usage", UsageHandler, args),
            (f"{prefix}/_aglais/notice", NoticeHandler, args),
            (f"{prefix}/_aglais/notice.js", NoticeScriptHandler),
            (f"{prefix}/oauth_callback", HubOAuthCallbackHandler),
            (f"{prefix}/ws.*", WebSocketProxy, args),
            (f"{prefix}(/.*)?", ProxyHandler, args),
        ],
        cookie_secret=os.urandom(32),
        hub_auth=hub_auth,
        login_url=hub_auth.login_url,
    )

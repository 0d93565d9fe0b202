"""Tornado handlers and the application of the auth proxy."""

from __future__ import annotations

import asyncio
import html
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import get_browser_protocol, url_path_join
from tornado import httpclient, httputil, routing, web, websocket
from tornado.httputil import HTTPHeaders
from tornado.log import app_log

from .crosssite import cross_site_refusal, is_cors_header, origin_allowed
from .notices import SCRIPT as NOTICE_SCRIPT
from .notices import NoticeSource, inject_script
from .sparkrights import SparkRights

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


def starting_page(notebook: str) -> str:
    """The page a browser gets while the notebook (``notebook``: its title) is booting."""
    title = html.escape(notebook)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="3"><title>Starting {title}</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:4em auto">
<h1>{title} is starting</h1><p>Your notebook server is up; {title} itself is still
booting (this can take up to a minute). This page reloads by itself.</p></body></html>"""


@dataclass
class ProxyState:
    """What the handlers share: where the notebook is, activity, the volume."""

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
    public_origins: tuple[str, ...] = ()  # the hub's public origins (besides the Host)
    spark_rights: SparkRights | None = None  # in a cluster: may the driver start executors?
    notebook: str = "Zeppelin"  # the upstream's title, as users read it ("JupyterLab")

    @property
    def spark_problem(self) -> str | None:
        """Why Spark cannot start executors, as the API server last answered (or None)."""
        return self.spark_rights.problem if self.spark_rights else None

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


class CookiePolicy:
    """Every cookie the proxy sets is ``SameSite=Lax``, and ``Secure`` when the browser
    reaches the hub over HTTPS (``X-Forwarded-Proto``/``Forwarded``, or an ``https``
    public URL of the hub).

    HubOAuth writes three cookies, all through the handler's ``set_cookie``: the login
    (``HubOAuth.set_cookie``, with the hub's ``cookie_options``), the OAuth state
    (``set_state_cookie``) and JupyterHub's ``_xsrf`` (``_set_xsrf_cookie``, which does
    not read ``cookie_options``), so the policy sits here rather than in
    ``HubOAuth.cookie_options``. An explicit ``samesite`` in the hub's cookie options
    (``JUPYTERHUB_COOKIE_OPTIONS``) still wins. Lax, not Strict: the OAuth redirect back
    from the hub must carry the state cookie even when the visit began on another site
    (a link in a mail), and Lax cookies are not sent on another site's sub-requests or
    POSTs. Zeppelin's own cookies pass through untouched.
    """

    def set_cookie(self, name: str, value: str | bytes, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("samesite", "Lax")
        public = self.settings.get("aglais_public_origins", ())  # type: ignore[attr-defined]
        https = get_browser_protocol(self.request) == "https"  # type: ignore[attr-defined]
        if https or any(o.startswith("https:") for o in public):
            kwargs["secure"] = True
        super().set_cookie(name, value, *args, **kwargs)  # type: ignore[misc]


class Base(CookiePolicy, HubOAuthenticated, web.RequestHandler):
    def initialize(self, state: ProxyState, hub_auth: HubOAuth) -> None:
        self.state = state
        self.hub_auth = hub_auth

    def _cross_site_refusal(self) -> str | None:
        return cross_site_refusal(
            self.request.method or "GET",
            self.request.headers,
            token_authenticated=getattr(self, "_token_authenticated", False),
            public_origins=self.state.public_origins,
        )

    def check_xsrf_cookie(self) -> None:
        """HubOAuth's hook before it trusts the login cookie of an unsafe request.

        JupyterHub's own check wants its ``_xsrf`` token, which Zeppelin's UI never
        sends; the proxy's rule (`crosssite`) asks for same-origin headers instead."""
        refusal = self._cross_site_refusal()
        if refusal:
            raise web.HTTPError(403, refusal)

    def cross_site_problem(self) -> str | None:
        """After the login is known: why this request is refused as cross-site, if it is."""
        _ = self.current_user  # a request authenticated by an API token is exempt
        return self._cross_site_refusal()

    def refuse_cross_site(self, problem: str) -> None:
        app_log.warning("%s %s: %s", self.request.method, self.request.path, problem)
        self.clear()
        self.set_status(403)
        self.finish({"status": "FORBIDDEN", "message": problem})


class HealthHandler(Base):
    """Readiness of the proxy; and, for the server's owner (or an admin with
    ``access:servers``), whether Zeppelin is up yet.

    Kubernetes' readinessProbe (``spawners/zeppelin/objects.py``) calls this path on the
    pod's port itself, with no login, and needs nothing but a 2xx. So a caller without
    a login gets a bare ``{"status": "ok"}``, the same for every server, whoever owns it
    and whether Zeppelin is up, starting or down; only a caller this server's OAuth
    lets in gets ``{"proxy": "ok", "zeppelin": "up"|"starting"}``, and ``"spark":
    "forbidden: <why>"`` when the pod's service account may not manage executor pods
    (`sparkrights`; no key while it may). (Through the hub,
    *that* a server runs is visible from any ``/user/<name>/`` URL, by JupyterHub's
    routing, whatever the proxy answers.)
    """

    async def get(self) -> None:
        if not self.current_user:
            self.finish({"status": "ok"})
            return
        health = {"proxy": "ok", "zeppelin": "up" if await upstream_up(self.state) else "starting"}
        if self.state.spark_problem:
            health["spark"] = f"forbidden: {self.state.spark_problem}"
        self.finish(health)


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
    """Forward any authenticated HTTP request to Zeppelin; a cross-site unsafe request
    (see `crosssite`) is refused with 403 before it reaches Zeppelin."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    async def prepare(self) -> None:
        problem = self.cross_site_problem()
        if problem:
            self.refuse_cross_site(problem)
            return
        await self.proxy()

    @web.authenticated
    async def proxy(self) -> None:
        self.state.touch()
        await self.forward()

    async def forward(self) -> None:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in HOP_BY_HOP and name.lower() != "cookie":
                headers.add(name, value)
        # the notebook's own cookies pass (JupyterLab's _xsrf); the hub's login does not
        cookies = [
            f"{k}={m.value}"
            for k, m in self.request.cookies.items()
            if not k.startswith(self.hub_auth.cookie_name)
        ]
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
            if name.lower() not in HOP_BY_HOP and not is_cors_header(name):
                self.add_header(name, value)
        body = response.body
        if body and self.wants_notice_bar(response):
            body = inject_script(body, url_path_join(self.state.prefix, "_aglais/notice.js"))
        if body:
            self.write(body)
        self.finish()

    def wants_notice_bar(self, response: httpclient.HTTPResponse) -> bool:
        """A page (not an API answer) of a booking's server, or of a server whose Spark
        cannot start executors."""
        html = "text/html" in response.headers.get("Content-Type", "")
        wanted = self.state.notices or self.state.spark_problem
        return bool(wanted) and self.request.method == "GET" and html

    def starting(self) -> None:
        """The notebook is not listening yet: say so (the hub's own check must pass)."""
        api_check = self.request.path.rstrip("/") == self.state.prefix.rstrip("/") + "/api"
        if api_check:
            self.finish({"starting": True})
        elif "text/html" in self.request.headers.get("Accept", ""):
            self.set_header("Retry-After", "3")
            self.finish(starting_page(self.state.notebook))
        else:
            self.set_status(503)
            self.set_header("Retry-After", "3")
            self.finish({"message": f"{self.state.notebook} is starting; retry in a few seconds"})


class WebSocketUpgrade(routing.Matcher):
    """Every request under the server's prefix that asks to become a WebSocket: Zeppelin's
    ``/ws``, JupyterLab's kernel channels, events and terminals alike (the plain HTTP
    proxy cannot carry one)."""

    def __init__(self, prefix: str) -> None:
        self.path = routing.PathMatches(f"{prefix}(/.*)?")

    def match(self, request: httputil.HTTPServerRequest) -> dict | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return self.path.match(request)


class WebSocketProxy(CookiePolicy, HubOAuthenticated, websocket.WebSocketHandler):
    """Forward an authenticated WebSocket (Zeppelin's /ws, JupyterLab's kernels) frame by
    frame.

    Browsers apply no same-origin policy to WebSockets, and a socket opened with the
    login cookie runs code as its owner: the upgrade is refused (403) unless its Origin
    is the request's own host or one of the hub's public origins. (A client that sends
    no Origin, i.e. not a browser, is let through, as tornado does.)"""

    def initialize(self, state: ProxyState, hub_auth: HubOAuth) -> None:
        self.state = state
        self.hub_auth = hub_auth
        self.upstream: websocket.WebSocketClientConnection | None = None

    def check_origin(self, origin: str) -> bool:
        host = self.request.headers.get("Host", "")
        if origin_allowed(origin, host, self.state.public_origins):
            return True
        app_log.warning(
            "WebSocket %s from Origin %s to host %s refused", self.request.path, origin, host
        )
        return False

    @web.authenticated
    async def get(self, *args: str) -> None:
        await super().get(*args)

    async def open(self, *args: str) -> None:
        url = self.state.upstream.replace("http", "ws", 1) + self.request.uri
        try:
            self.upstream = await websocket.websocket_connect(url)
        except OSError:
            self.close(1013, f"{self.state.notebook} is starting")
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
            )
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
    """The booking's notices for the page's bar, then why Spark cannot start executors
    if it cannot (the server's owner only)."""

    @web.authenticated
    async def get(self) -> None:
        found = await self.state.notices.fetch(self.state.client) if self.state.notices else []
        if self.state.spark_problem:
            found = [*found, {"kind": "spark", "message": self.state.spark_problem}]
        self.finish({"notices": found})


class CallbackHandler(CookiePolicy, HubOAuthCallbackHandler):
    """Hub OAuth's callback, whose login and ``_xsrf`` cookies follow `CookiePolicy`."""


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
            (f"{prefix}/_aglais/health", HealthHandler, args),
            (f"{prefix}/_aglais/usage", UsageHandler, args),
            (f"{prefix}/_aglais/notice", NoticeHandler, args),
            (f"{prefix}/_aglais/notice.js", NoticeScriptHandler),
            (f"{prefix}/oauth_callback", CallbackHandler),
            (WebSocketUpgrade(prefix), WebSocketProxy, args),
            (f"{prefix}(/.*)?", ProxyHandler, args),
        ],
        cookie_secret=os.urandom(32),
        hub_auth=hub_auth,
        login_url=hub_auth.login_url,
        aglais_public_origins=state.public_origins,
    )

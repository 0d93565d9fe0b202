"""The fault proxy's two servers (ours, aiohttp): the proxy and its control API.

The proxy terminates TLS with its own serving certificate (the cluster CA's, for
127.0.0.1) and sends every request on to the real kube-apiserver over TLS, verifying it
with the CA. Headers pass through unchanged but the hop-by-hop ones, so a bearer token
(a ServiceAccount's) reaches the API server, which authenticates and authorizes it as
if the client had come directly: RBAC answers are the real ones. Client certificates end
at the proxy's TLS and cannot be forwarded; such a client arrives anonymous.
Responses stream as they arrive (watches, long lists); upgrades (exec, attach,
port-forward) are not proxied. When the API server cannot be reached the proxy answers
503 with a Status saying so (a direct client would see the connection refused).

The control API (plain HTTP on loopback): ``POST /faults`` a rule (201 with its id;
400 naming what is wrong), ``GET /faults`` the rules and how often each fired,
``GET /faults/<id>``, ``DELETE /faults`` (all) and ``DELETE /faults/<id>``,
``GET /requests`` the last requests seen (verb, resource, namespace, status, rule),
``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import ssl
import time

import aiohttp
from aiohttp import web
from yarl import URL

from .rules import RequestInfo, Rule, RuleError, Rules, classify

log = logging.getLogger(__name__)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
}
SEEN = 1000  # requests remembered for GET /requests


class FaultProxyServer:
    def __init__(self, upstream: str, ca_file: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.rules = Rules()
        self.seen: collections.deque[dict] = collections.deque(maxlen=SEEN)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=self.ca_file)
            # no total timeout: watches and long requests last as long as the server says
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=0),
                timeout=timeout,
                auto_decompress=False,  # bytes as they came, their Content-Encoding kept
                # only what the client sent: the official client sends bodies without a
                # Content-Type (the API server takes them as JSON), aiohttp would add one
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the proxy -----------------------------------------------------------------------

    def _remember(
        self, request: web.Request, info: RequestInfo | None, status: int, rule: Rule | None
    ) -> None:
        self.seen.append(
            {
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                "verb": info and info.verb,
                "resource": info and info.resource,
                "namespace": info and info.namespace,
                "status": status,
                "rule": rule and rule.id,
            }
        )

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        info = classify(request.method, request.path, request.query_string)
        rule = self.rules.take(info)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        if rule is not None and rule.status is not None:
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
            self._remember(request, info, rule.status, rule)
            return web.json_response(rule.status_body(info), status=rule.status, headers=headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        url = URL(self.upstream + request.raw_path, encoded=True)
        try:
            upstream = await self.session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as error:
            self._remember(request, info, 503, rule)
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "reason": "ServiceUnavailable",
                    "code": 503,
                    "message": f"aglais fault proxy: the API server is unreachable: {error}",
                },
                status=503,
            )
        try:
            self._remember(request, info, upstream.status, rule)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            # each chunk as it comes: a watch's events must not wait for the next ones
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()

    def proxy_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        return app

    # -- the control API -----------------------------------------------------------------

    def control_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/faults", self._add)
        app.router.add_get("/faults", self._list)
        app.router.add_delete("/faults", self._clear)
        app.router.add_get("/faults/{id}", self._one)
        app.router.add_delete("/faults/{id}", self._remove)
        app.router.add_get("/requests", self._requests)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _add(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read() or b"null")
            rule = self.rules.add(Rule.parse(data))
        except ValueError as error:  # RuleError, or JSON that does not parse
            problem = str(error) if isinstance(error, RuleError) else f"not JSON: {error}"
            return web.json_response({"error": problem}, status=400)
        log.info("rule %s: %s", rule.id, rule.describe())
        return web.json_response(rule.describe(), status=201)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [rule.describe() for rule in self.rules.rules]})

    async def _one(self, request: web.Request) -> web.Response:
        for rule in self.rules.rules:
            if rule.id == request.match_info["id"]:
                return web.json_response(rule.describe())
        return web.json_response({"error": f"no rule {request.match_info['id']}"}, status=404)

    async def _clear(self, request: web.Request) -> web.Response:
        return web.json_response({"cleared": self.rules.clear()})

    async def _remove(self, request: web.Request) -> web.Response:
        rule_id = request.match_info["id"]
        if not self.rules.remove(rule_id):
            return web.json_response({"error": f"no rule {rule_id}"}, status=404)
        return web.json_response({"removed": rule_id})

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": list(self.seen)})


async def serve(
    upstream: str,
    ca_file: str,
    cert_file: str,
    key_file: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    control_port: int = 0,
) -> tuple[FaultProxyServer, list[web.AppRunner], int, int]:
    """Start both servers; the server object, their runners and the ports they bound."""
    server = FaultProxyServer(upstream, ca_file)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    bound = []
    runners = []
    for app, bind_port, context in (
        (server.proxy_app(), port, tls),
        (server.control_app(), control_port, None),
    ):
        # cancel a handler whose client went away: a watch must not outlive its client
        # and on SIGTERM, open watches get a second to finish, not the default minute
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, host, bind_port, ssl_context=context)
        await site.start()
        runners.append(runner)
        bound.append(runner.addresses[0][1])
    return server, runners, bound[0], bound[1]

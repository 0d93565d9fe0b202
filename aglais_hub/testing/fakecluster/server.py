"""The HTTP face of the testing cluster: Kubernetes REST paths, lists, watches
(chunked HTTP and WebSocket), Status errors, and fault injection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .errors import ApiError
from .faults import REASONS
from .resources import RESOURCES, Resource, lookup

if TYPE_CHECKING:
    from . import FakeCluster

TRUE = ("true", "True", "1")
NAMESPACE_SUBRESOURCES = ("status", "finalize")
DEFAULT_WATCH_SECONDS = 1800


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.status(), error.code, error.headers)


class Route:
    """What a request path names."""

    def __init__(self, group: str, version: str, rest: str):
        segments = [s for s in rest.split("/") if s]
        self.watch_prefix = bool(segments) and segments[0] == "watch"
        if self.watch_prefix:
            segments = segments[1:]
        self.namespace: str | None = None
        if (
            len(segments) >= 3
            and segments[0] == "namespaces"
            and segments[2] not in NAMESPACE_SUBRESOURCES
        ):
            self.namespace = segments[1]
            segments = segments[2:]
        if not segments:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.resource: Resource = lookup(group, version, segments[0])
        self.name = segments[1] if len(segments) > 1 else None
        self.subresource = segments[2] if len(segments) > 2 else ""
        if len(segments) > 3 or (
            self.subresource and self.subresource not in self.resource.subresources
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if self.resource.namespaced and self.name and self.namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def verb(self, method: str, query: dict) -> str:
        if method == "GET":
            if self.name is None:
                return "watch" if self.watch_prefix or query.get("watch") in TRUE else "list"
            return "get"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if self.name else "deletecollection",
        }.get(method, method.lower())


def _list_body(resource: Resource, items: list[dict], rv: int) -> dict:
    return {
        "kind": f"{resource.kind}List",
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": str(rv)},
        "items": items,
    }


def discovery_routes(app: web.Application, cluster: FakeCluster) -> None:
    groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})

    def resource_list(group: str, version: str) -> dict:
        resources = []
        for r in RESOURCES:
            if (r.group, r.version) != (group, version):
                continue
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "shortNames": list(r.short_names),
                    "verbs": [
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                }
            )
            for sub in r.subresources:
                resources.append(
                    {
                        "name": f"{r.plural}/{sub}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    async def version(request: web.Request) -> web.Response:
        return json_response({
            "major": "1", "minor": "30", "gitVersion": "v1.30.0-aglais-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc",
            "platform": "linux/amd64",
        })  # fmt: skip

    async def api(request: web.Request) -> web.Response:
        return json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": cluster.host}
                ],
            }
        )

    async def apis(request: web.Request) -> web.Response:
        return json_response(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        )

    async def core_v1(request: web.Request) -> web.Response:
        return json_response(resource_list("", "v1"))

    async def group_version(request: web.Request) -> web.Response:
        g, v = request.match_info["group"], request.match_info["version"]
        if (g, v) not in groups:
            return error_response(ApiError(404, "NotFound", f"{g}/{v} not found"))
        return json_response(resource_list(g, v))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    for slash in ("", "/"):  # clients ask for both /version and /version/
        app.router.add_get("/version" + slash, version)
        app.router.add_get("/api" + slash, api)
        app.router.add_get("/apis" + slash, apis)
        app.router.add_get("/api/v1" + slash, core_v1)
        app.router.add_get("/apis/{group}/{version}" + slash, group_version)
    for path in ("/healthz", "/readyz", "/livez"):
        app.router.add_get(path, healthz)


class ApiServer:
    """aiohttp handlers bound to one cluster."""

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self.store = cluster.store
        self.open_streams: set[web.StreamResponse] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        discovery_routes(app, self.cluster)
        app.router.add_route("*", "/api/{version}/{rest:.*}", self.handle_core)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.*}", self.handle_group)
        return app

    async def handle_core(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, "", request.match_info["version"])

    async def handle_group(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self.handle(request, info["group"], info["version"])

    async def handle(self, request: web.Request, group: str, version: str) -> web.StreamResponse:
        self.cluster.request_count += 1
        try:
            route = Route(group, version, request.match_info["rest"])
            query = dict(request.query)
            verb = route.verb(request.method, query)
            faults = self.cluster.faults
            delay = faults.delay_for(verb)
            if delay:
                await asyncio.sleep(delay)
            fault = faults.take(verb, route.resource.plural, route.namespace)
            if fault:
                error = ApiError(
                    fault.status, REASONS.get(fault.status, "InternalError"), fault.message
                )
                if fault.retry_after is not None:
                    error.headers["Retry-After"] = str(fault.retry_after)
                return error_response(error)
            if verb == "watch":
                return await self.watch(request, route, query)
            return await self.dispatch(request, route, verb, query)
        except ApiError as error:
            return error_response(error)

    async def _body(self, request: web.Request) -> Any:
        text = await request.text()
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError.bad_request("the request body is not valid JSON") from None

    async def dispatch(
        self, request: web.Request, route: Route, verb: str, query: dict
    ) -> web.StreamResponse:
        store, r, ns = self.store, route.resource, route.namespace or ""
        if verb == "list":
            items, rv = store.list(
                r, route.namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
            )
            return json_response(_list_body(r, items, rv))
        if verb == "get":
            if route.subresource == "log":
                return web.Response(
                    text=self.cluster.kubelet.read_log(ns, route.name, query.get("container"))
                )
            return json_response(store.get(r, ns, route.name))
        if verb == "create":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise ApiError.bad_request("expected an object")
            if query.get("dryRun") == "All":
                return json_response(body, 201)
            return json_response(store.create(r, ns, body), 201)
        if verb == "update":
            body = await self._body(request)
            return json_response(store.replace(r, ns, route.name, body, route.subresource))
        if verb == "patch":
            body = await self._body(request)
            content_type = request.headers.get("Content-Type", "")
            return json_response(
                store.patch(r, ns, route.name, content_type, body, route.subresource)
            )
        if verb == "delete":
            options = await self._body(request) if request.can_read_body else {}
            return json_response(
                store.delete(r, ns, route.name, **self._delete_args(query, options))
            )
        if verb == "deletecollection":
            options = await self._body(request) if request.can_read_body else {}
            items, rv = store.list(
                r, route.namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
            )
            deleted = []
            for item in items:
                meta = item["metadata"]
                try:
                    deleted.append(
                        store.delete(
                            r,
                            meta.get("namespace", ""),
                            meta["name"],
                            **self._delete_args(query, options),
                        )
                    )
                except ApiError as error:
                    if error.code != 404:
                        raise
            return json_response(_list_body(r, deleted, store.rv))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")

    @staticmethod
    def _delete_args(query: dict, options: dict) -> dict:
        grace = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        return {
            "propagation": options.get("propagationPolicy") or query.get("propagationPolicy"),
            "grace_period": int(grace) if grace is not None else None,
            "preconditions": options.get("preconditions"),
        }

    # -- watches ---------------------------------------------------------------------------

    async def watch(self, request: web.Request, route: Route, query: dict) -> web.StreamResponse:
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        bookmarks = query.get("allowWatchBookmarks") in TRUE
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            watch = self.store.watch(
                route.resource,
                route.namespace,
                query.get("labelSelector", ""),
                query.get("fieldSelector", ""),
                query.get("resourceVersion"),
            )
            first_error = None
        except ApiError as error:
            if error.code != 410:
                raise
            watch, first_error = None, error
        if websocket:
            response: web.StreamResponse = web.WebSocketResponse(
                protocols=("v4.channel.k8s.io", "base64.channel.k8s.io", "channel.k8s.io"),
                autoping=True,
                heartbeat=None,
            )
        else:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
        await response.prepare(request)
        self.open_streams.add(response)
        try:
            if first_error is not None:
                await self._send(response, {"type": "ERROR", "object": first_error.status()})
                return response
            assert watch is not None
            await self._pump(response, watch, timeout, bookmarks, route)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.open_streams.discard(response)
            if watch is not None:
                self.store.stop_watch(watch)
            await self._finish(response)
        return response

    async def _pump(
        self,
        response: web.StreamResponse,
        watch: Any,
        timeout: float,
        bookmarks: bool,
        route: Route,
    ) -> None:
        deadline = time.monotonic() + timeout
        interval = self.cluster.bookmark_interval
        closed_by_client = None
        if isinstance(response, web.WebSocketResponse):
            closed_by_client = asyncio.ensure_future(self._wait_closed(response))
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                waits = [asyncio.ensure_future(watch.queue.get())]
                if closed_by_client is not None:
                    waits.append(closed_by_client)
                done, _ = await asyncio.wait(
                    waits,
                    timeout=min(left, interval) if bookmarks else left,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if closed_by_client is not None and closed_by_client in done:
                    waits[0].cancel()
                    return
                if not done:
                    waits[0].cancel()
                    if bookmarks:
                        await self._send(
                            response,
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": route.resource.kind,
                                    "apiVersion": route.resource.api_version,
                                    "metadata": {"resourceVersion": str(self.store.rv)},
                                },
                            },
                        )
                    continue
                event = waits[0].result()
                if event is None:  # the watch was dropped
                    return
                await self._send(response, event)
        finally:
            if closed_by_client is not None:
                closed_by_client.cancel()

    @staticmethod
    async def _wait_closed(ws: web.WebSocketResponse) -> None:
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                return

    @staticmethod
    async def _send(response: web.StreamResponse, event: dict | tuple) -> None:
        text = event[1].line(event[0]) if isinstance(event, tuple) else json.dumps(event)
        if isinstance(response, web.WebSocketResponse):
            await response.send_str(text)
        else:
            await response.write(text.encode() + b"\n")

    @staticmethod
    async def _finish(response: web.StreamResponse) -> None:
        try:
            if isinstance(response, web.WebSocketResponse):
                await response.close()
            else:
                await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass

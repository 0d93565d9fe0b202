"""What the service asks the hub, with its own API token: users, servers, stops, activity."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .policy import iso

USER_CACHE_SECONDS = 30.0
USER_CACHE_MAX = 2000  # names remembered at most (requests name users; some do not exist)
SERVERS_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    groups: tuple[str, ...]


@dataclass(frozen=True)
class HubServer:
    user: str
    name: str
    groups: tuple[str, ...]
    user_options: dict
    ready: bool


class HubDirectory:
    """A small, caching client of the hub's REST API."""

    def __init__(self, api_url: str, token: str, client: AsyncHTTPClient | None = None):
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.client = client or AsyncHTTPClient()
        self._users: dict[str, tuple[float, HubUser | None]] = {}
        self._servers: tuple[float, list[HubServer]] | None = None
        self._listing: asyncio.Future | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        request = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=10,
        )
        response = await self.client.fetch(request)
        return json.loads(response.body) if response.body else None

    async def user(self, name: str) -> HubUser | None:
        """The hub's view of a user (admin flag, groups), cached briefly."""
        cached = self._users.get(name)
        if cached and time.monotonic() - cached[0] < USER_CACHE_SECONDS:
            return cached[1]
        try:
            model = await self._call("GET", f"users/{quote(name, safe='')}")
            user = HubUser(
                model["name"], bool(model.get("admin")), tuple(model.get("groups") or ())
            )
        except HTTPClientError as error:
            if error.code not in (400, 404):  # a name the hub cannot have is no user either
                raise
            user = None
        if len(self._users) >= USER_CACHE_MAX:
            self._users.clear()
        self._users[name] = (time.monotonic(), user)
        return user

    async def active_servers(self) -> tuple[float, list[HubServer]]:
        """Every running or starting server, and when the list was read (monotonic).

        Cached for a second; concurrent callers share one request (50 spawns at once
        must not become 50 listings of every user at a hub that is busy spawning).
        """
        if self._servers and time.monotonic() - self._servers[0] < SERVERS_CACHE_SECONDS:
            return self._servers
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(self._list_servers())
        return await asyncio.shield(self._listing)

    async def _list_servers(self) -> tuple[float, list[HubServer]]:
        read_at = time.monotonic()
        users = await self._call("GET", "users?state=active&limit=10000")
        servers = [
            HubServer(
                u["name"],
                name,
                tuple(u.get("groups") or ()),
                server.get("user_options") or {},
                bool(server.get("ready")),
            )
            for u in users
            for name, server in (u.get("servers") or {}).items()
        ]
        self._servers = (read_at, servers)
        return self._servers

    def forget_servers(self) -> None:
        self._servers = None

    async def stop_server(self, user: str, server: str) -> bool:
        """Stop a named server; False when it was not running (or the user is gone)."""
        try:
            await self._call("DELETE", f"users/{quote(user, safe='')}/servers/{quote(server)}")
        except HTTPClientError as error:
            if error.code in (400, 404):
                return False
            raise
        self.forget_servers()
        return True

    async def touch(self, user: str, server: str, when: datetime) -> None:
        """Report activity so the idle culler leaves a booked server alone."""
        body = {"servers": {server: {"last_activity": iso(when)}}}
        try:
            await self._call("POST", f"users/{quote(user, safe='')}/activity", body)
        except HTTPClientError as error:
            if error.code not in (400, 404):
                raise

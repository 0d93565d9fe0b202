"""The hub's side of the spawn gate: ask the reservation service before every start.

A queued spawn asks again every ``poll`` seconds and reports its place in the
line to the spawn page; it gives up after ``timeout`` seconds and leaves the
queue. When the service does not answer, booked servers are refused (nobody can
tell whether the booking is active) and unbooked ones follow ``when_unreachable``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

UNREACHABLE_POLICIES = ("allow-smallest", "allow", "refuse")


class GateUnreachable(Exception):
    """The reservation service did not answer (or answered with an error)."""


@dataclass(frozen=True)
class GateAnswer:
    allowed: bool
    reason: str
    limits: dict | None
    position: int | None
    booking: int | None
    title: str = ""

    @property
    def queued(self) -> bool:
        return self.position is not None


class SpawnGateClient:
    """POSTs to ``<url>api/spawn-check`` with the hub's gate token."""

    def __init__(self, url: str, token: str, request_timeout: float = 10):
        self.url = url.rstrip("/") + "/api/spawn-check"
        self.token = token
        self.request_timeout = request_timeout

    async def _post(self, body: dict) -> dict:
        request = HTTPRequest(
            self.url, method="POST", body=json.dumps(body), request_timeout=self.request_timeout,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            response = await AsyncHTTPClient().fetch(request)
            return json.loads(response.body)
        except HTTPClientError as error:
            raise GateUnreachable(f"HTTP {error.code}") from error
        except (OSError, ValueError) as error:
            raise GateUnreachable(str(error) or type(error).__name__) from error

    async def check(self, user: str, server_name: str, profile: str | None,
                    tier: str | None = None) -> GateAnswer:  # fmt: skip
        body = {"user": user, "server_name": server_name, "profile": profile, "tier": tier}
        data = await self._post(body)
        return GateAnswer(bool(data["allowed"]), data.get("reason", ""), data.get("limits"),
                          data.get("position"), data.get("booking"),
                          data.get("title") or "")  # fmt: skip

    async def withdraw(self, user: str, server_name: str) -> None:
        try:
            await self._post({"user": user, "server_name": server_name, "withdraw": True})
        except GateUnreachable:
            pass  # the service forgets abandoned entries by itself

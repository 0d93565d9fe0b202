"""The hub's side of the spawn gate: ask the reservation service before every start.

A queued spawn asks again every ``poll`` seconds and reports its place in the
line to the spawn page; it gives up after ``timeout`` seconds and leaves the
queue. When the service does not answer, booked servers are refused (nobody can
tell whether the booking is active) and unbooked ones follow ``when_unreachable``.

"Does not answer" is narrow, because it may let a spawn past the queue: no connection,
a timeout, or 502/503/504 (a proxy in between with no service behind it, or the
service saying its hub or database is away). Every other answer that is not a
spawn-check decision — any 4xx, a 500, a body that is not one — refuses the spawn
with the service's message (`GateRefused`): the gate fails closed on errors and opens
only for a service that is really away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

UNREACHABLE_POLICIES = ("allow-smallest", "allow", "refuse")
UNREACHABLE_STATUSES = (502, 503, 504, 599)  # 599: tornado's no connection / timed out


class GateError(Exception):
    """The spawn-check gave no decision."""


class GateUnreachable(GateError):
    """The reservation service did not answer (no connection, timeout, 502/503/504)."""


class GateRefused(GateError):
    """The service answered with an error: the spawn is refused, saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class GateAnswer:
    allowed: bool
    reason: str
    limits: dict | None
    position: int | None
    booking: int | None
    title: str = ""
    size: str | None = None  # a booking's size name: its flavour is the server's

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
            self.url,
            method="POST",
            body=json.dumps(body),
            request_timeout=self.request_timeout,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as error:
            if error.code in UNREACHABLE_STATUSES:
                raise GateUnreachable(f"HTTP {error.code}") from error
            raise GateRefused(error.code, refusal(error)) from error
        except OSError as error:  # refused, reset, DNS, TLS: no answer at all
            raise GateUnreachable(str(error) or type(error).__name__) from error
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("allowed"), bool):
            raise GateRefused(
                response.code,
                "The reservation service answered something that "
                "is not a spawn-check decision, so this start is refused. Tell "
                "an administrator.",
            )
        return data

    async def check(
        self, user: str, server_name: str, profile: str | None, tier: str | None = None
    ) -> GateAnswer:
        body = {"user": user, "server_name": server_name, "profile": profile, "tier": tier}
        data = await self._post(body)
        position, booking, size = data.get("position"), data.get("booking"), data.get("size")
        return GateAnswer(
            data["allowed"],
            str(data.get("reason") or ""),
            data.get("limits") if isinstance(data.get("limits"), dict) else None,
            position if isinstance(position, int) else None,
            booking if isinstance(booking, int) else None,
            str(data.get("title") or ""),
            size if isinstance(size, str) and size else None,
        )

    async def withdraw(self, user: str, server_name: str) -> None:
        try:
            await self._post({"user": user, "server_name": server_name, "withdraw": True})
        except GateError:
            pass  # the service forgets abandoned entries by itself


def refusal(error: HTTPClientError) -> str:
    """What the user reads when the service answers an error: its own message."""
    message = ""
    body = error.response.body if error.response is not None else b""
    try:
        found = json.loads(body or b"{}")
        message = str(found.get("message") or "") if isinstance(found, dict) else ""
    except ValueError:
        pass
    message = " ".join(message.split())[:500]
    if error.code >= 500:
        return (
            "The reservation service failed on this start (HTTP "
            f"{error.code}{': ' + message if message else ''}), so it is refused. Try "
            "again in a minute; tell an administrator if it persists."
        )
    return (
        "The reservation service refused this start (HTTP "
        f"{error.code}): {message or error.message or 'no reason given'}"
    )

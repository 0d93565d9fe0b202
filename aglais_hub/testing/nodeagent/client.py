"""A small Kubernetes API client of ours (aiohttp, plain dicts), for the node agent and
the volume provisioner.

It authenticates with a kubeconfig's client certificate (as the control plane's
``client_kubeconfig`` writes them) and does what these two programs need: requests,
and list-then-watch that resumes from the last resourceVersion seen and lists afresh on
410 Gone. It is not a general client: no exec/auth plugins, no tokens, no proxies, no
retries of writes (callers decide).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

log = logging.getLogger(__name__)
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """An answer other than 2xx; ``status`` is the HTTP code, ``body`` the Status."""

    def __init__(self, status: int, body: object):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(f"{status} {self.body.get('reason', '')}: {self.body.get('message', '')}")


@dataclass
class Credentials:
    """The server and TLS material from a kubeconfig's current context."""

    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> Credentials:
        config = yaml.safe_load(Path(path).read_text())
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

        def data(section: dict, key: str) -> bytes:
            if f"{key}-data" in section:
                return base64.b64decode(section[f"{key}-data"])
            return Path(section[key]).read_bytes()

        return cls(
            cluster["server"].rstrip("/"),
            data(cluster, "certificate-authority"),
            data(user, "client-certificate"),
            data(user, "client-key"),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        # load_cert_chain wants files: written private (0600), read, removed at once
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
            for path, pem in ((cert, self.cert_pem), (key, self.key_pem)):
                path.touch(0o600)
                path.write_bytes(pem)
            context.load_cert_chain(cert, key)
        return context


class ApiClient:
    """Async requests to one API server as one client-certificate user."""

    def __init__(self, credentials: Credentials, user_agent: str = "aglais-testing"):
        self.credentials = credentials
        self.server = credentials.server
        self._ssl = credentials.ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self.user_agent = user_agent

    @classmethod
    def from_kubeconfig(cls, path: Path | str, user_agent: str = "aglais-testing") -> ApiClient:
        return cls(Credentials.from_kubeconfig(path), user_agent)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=20)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.user_agent}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: dict | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict:
        data = json.dumps(body) if body is not None else None
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            try:
                answer = json.loads(text) if text else {}
            except ValueError:
                answer = {"message": text}
            if response.status >= 300:
                raise ApiError(response.status, answer)
            return answer

    async def get(self, path: str, **params: str) -> dict:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: object) -> dict:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: object) -> dict:
        return await self.request("PUT", path, body)

    async def patch(self, path: str, body: object, content_type: str = MERGE) -> dict:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, body: object = None) -> dict:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, params: dict) -> AsyncIterator[tuple[str, dict]]:
        """The watch events of one request, (type, object), until the server ends it."""
        params = {**params, "watch": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self.session.get(self.server + path, params=params, timeout=timeout) as response:
            if response.status >= 300:
                text = await response.text()
                try:
                    raise ApiError(response.status, json.loads(text))
                except ValueError:
                    raise ApiError(response.status, text) from None
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]


Handler = Callable[[str, dict], Awaitable[None]]


async def list_and_watch(
    client: ApiClient,
    path: str,
    handler: Handler,
    on_list: Callable[[list[dict]], Awaitable[None]] | None = None,
    **params: str,
) -> None:
    """A reflector: list, hand every object over (``on_list`` gets them all, else the
    handler each as ADDED), then watch from the list's resourceVersion. Every event moves
    the resourceVersion on (bookmarks too); a closed watch resumes from there; 410 Gone
    (the version was compacted) lists afresh. Runs until cancelled."""
    version: str | None = None
    while True:
        try:
            if version is None:
                listing = await client.get(path, **params)
                version = listing["metadata"]["resourceVersion"]
                items = listing.get("items") or []
                if on_list is not None:
                    await on_list(items)
                else:
                    for item in items:
                        await handler("ADDED", item)
            watch_params = {
                **params,
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "240",
            }
            async for kind, obj in client.watch(path, watch_params):
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        log.info("watch %s: %s; listing again", path, obj.get("message"))
                        version = None
                        break
                    raise ApiError(obj.get("code") or 500, obj)
                version = obj["metadata"].get("resourceVersion") or version
                if kind != "BOOKMARK":
                    await handler(kind, obj)
        except asyncio.CancelledError:
            raise
        except ApiError as error:
            if error.status == 410:
                version = None
                continue
            log.warning("watch %s failed: %s", path, error)
            await asyncio.sleep(1)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            log.warning("watch %s interrupted: %r", path, error)
            await asyncio.sleep(1)


def request_sync(
    credentials: Credentials,
    method: str,
    path: str,
    body: object = None,
    content_type: str = "application/json",
    timeout: float = 30,
) -> dict:
    """One blocking request (standard library only), for setup code outside an event loop."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        credentials.server + path,
        data=data,
        method=method,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=credentials.ssl_context()
        ) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            raise ApiError(error.code, json.loads(payload)) from None
        except ValueError:
            raise ApiError(error.code, payload.decode(errors="replace")) from None
    return json.loads(text) if text else {}


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def user_cluster_role(name: str, user: str, rules: list[dict]) -> list[tuple[str, dict]]:
    """(API path, object) pairs: a ClusterRole ``name`` of ``rules`` bound to ``user``,
    for the testing cluster's own components."""
    base = "/apis/rbac.authorization.k8s.io/v1"
    group = "rbac.authorization.k8s.io"
    return [
        (
            f"{base}/clusterroles",
            {
                "apiVersion": f"{group}/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rules,
            },
        ),
        (
            f"{base}/clusterrolebindings",
            {
                "apiVersion": f"{group}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": group, "kind": "User", "name": user}],
            },
        ),
    ]

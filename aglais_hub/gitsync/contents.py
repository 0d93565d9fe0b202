"""A user's Jupyter server, reached as that user: the Jupyter Server contents API at
``<servers url><base url>user/<name>/<server>/api/contents/<path>``, through the hub's
proxy, the way the user's browser reaches it.

Which token: the caller's own. A browser's request to the service carries the token of
its hub OAuth login (HubOAuth's cookie); an API client's carries its
``Authorization: token``. The service itself holds no right to anyone's server: its
hub role is empty, and its OAuth client allows ``access:servers!user`` (hubconfig.py),
which JupyterHub narrows at each login to the logged-in user's own servers. So the
service can write into exactly the servers its caller could, and no others. A token
without that scope gets `NotAllowed`.

Every error is a `ContentsError` whose ``status`` the API answers with and whose
message a user can act on (a stopped server: "start your server first", 409).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

TIMEOUT = 30.0  # seconds for one request to the server (a large notebook included)


class ContentsError(Exception):
    """A request to the user's server failed; ``status`` is what the API answers."""

    status = 502

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServerNotRunning(ContentsError):
    """The server is stopped, or still starting."""

    status = 409


class NotAllowed(ContentsError):
    """The server refused the token (it lacks ``access:servers`` for this server)."""

    status = 403


class ContentsNotFound(ContentsError):
    status = 404


class NotAFolder(ContentsError):
    """A path that should be a folder is a file (or the other way round)."""

    status = 409


class ServerRefused(ContentsError):
    """The server turned the request down (e.g. a notebook asked for is a folder)."""

    status = 409


class BadPath(ContentsError):
    status = 422


class ServerUnreachable(ContentsError):
    """No answer, or an answer that is not the Jupyter contents API."""

    status = 502


def server_label(server: str) -> str:
    """How messages name a server."""
    return f"your server '{server}'" if server else "your default server"


def server_url(servers_url: str, user: str, server: str = "") -> str:
    """The root of ``user``'s ``server`` (``servers_url`` is the proxy's address with the
    hub's base URL). Pure."""
    url = f"{servers_url.rstrip('/')}/user/{quote(user, safe='')}/"
    return url + (f"{quote(server, safe='')}/" if server else "")


def clean_path(path: str) -> str:
    """A path inside the server, relative, as ``a/b`` ("" is the server's top); BadPath
    for an absolute path, ``..``, a backslash or a control character. Pure."""
    if not isinstance(path, str) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise BadPath("A path in your server must be text without control characters.")
    if path.startswith("/") or "\\" in path:
        raise BadPath(f"{path[:80]!r} must be relative to your server's top folder, with '/'.")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BadPath(f"{path[:80]!r} leaves your server's folders ('..').")
    return "/".join(parts)


@dataclass(frozen=True)
class Entry:
    """One item of a folder listing."""

    name: str
    path: str
    type: str  # "notebook", "file" or "directory"
    last_modified: str


@dataclass(frozen=True)
class Notebook:
    """A notebook as read from (or written to) the server. ``sha256`` is the server's
    digest of the file's bytes (None when it hashes with another algorithm)."""

    path: str
    content: dict
    sha256: str | None
    last_modified: str


def _digest(model: dict) -> str | None:
    return model.get("hash") if model.get("hash_algorithm") == "sha256" else None


class ContentsClient:
    """The contents API of one user's server, with a token the caller supplies."""

    def __init__(
        self,
        servers_url: str,
        user: str,
        token: str,
        server: str = "",
        *,
        http: AsyncHTTPClient | None = None,
        timeout: float = TIMEOUT,
    ):
        self.root = server_url(servers_url, user, server)
        self.server = server
        self._token = token
        self._http = http or AsyncHTTPClient()
        self._timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"ContentsClient({self.root!r})"

    # -- the four operations ---------------------------------------------------------------

    async def list(self, path: str = "") -> list[Entry]:
        """The folder's items, folders first, then by name."""
        model = await self._model(path, type="directory", content=1)
        if model.get("type") != "directory":
            raise NotAFolder(f"{path!r} in {server_label(self.server)} is not a folder.")
        entries = [
            Entry(e["name"], e["path"], e["type"], e.get("last_modified", ""))
            for e in model.get("content") or []
        ]
        return sorted(entries, key=lambda e: (e.type != "directory", e.name.lower()))

    async def get_notebook(self, path: str) -> Notebook:
        """The notebook's JSON and the digest of its file."""
        model = await self._model(path, type="notebook", content=1, hash=1)
        return Notebook(model["path"], model["content"], _digest(model), model["last_modified"])

    async def put_notebook(self, path: str, content: dict) -> Notebook:
        """Write (create or replace) the notebook; its folder must exist (`ensure_dir`).
        Returns what the server now holds, with the digest of the file it wrote."""
        clean = clean_path(path)
        if not clean:
            raise BadPath("Give the notebook's path in your server.")
        body = {"type": "notebook", "format": "json", "content": content}
        await self._call("PUT", clean, body=body)
        model = await self._model(clean, content=0, hash=1)
        return Notebook(model["path"], content, _digest(model), model["last_modified"])

    async def ensure_dir(self, path: str) -> None:
        """Make the folder and any missing parent; NotAFolder when one is a file."""
        clean = clean_path(path)
        parts = clean.split("/") if clean else []
        for depth in range(1, len(parts) + 1):
            here = "/".join(parts[:depth])
            try:
                model = await self._model(here, content=0)
            except ContentsNotFound:
                await self._call("PUT", here, body={"type": "directory"})
                continue
            if model.get("type") != "directory":
                raise NotAFolder(
                    f"{here!r} in {server_label(self.server)} is a file, not a folder."
                )

    # -- HTTP ------------------------------------------------------------------------------

    async def _model(self, path: str, **query: Any) -> dict:
        return await self._call("GET", clean_path(path), query=query)

    async def _call(
        self, method: str, path: str, query: dict | None = None, body: Any = None
    ) -> dict:
        url = self.root + "api/contents/" + quote(path)
        if query:
            url += "?" + urlencode(query)
        request = HTTPRequest(
            url,
            method=method,
            headers={
                "Authorization": f"token {self._token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
            body=None if body is None else json.dumps(body),
            follow_redirects=False,
            request_timeout=self._timeout,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as error:  # refused, reset, name, TLS, timeout
            raise ServerUnreachable(
                f"The Git service could not reach {server_label(self.server)} "
                f"({type(error).__name__}); try again in a moment."
            ) from None
        if 200 <= response.code < 300:
            return json.loads(response.body) if response.body else {}
        error = self._error(response, path)
        if method != "GET" and response.code in (401, 403, 405):
            # a write to a stopped server lands on the hub's own redirect handler, which
            # refuses it (405, or 403 for want of an XSRF token): a GET tells which it was
            await self._call("GET", "", query={"content": 0})  # ServerNotRunning if stopped
        raise error

    def _error(self, response: HTTPResponse, path: str) -> ContentsError:
        """What an answer other than 2xx means, in words."""
        label, code = server_label(self.server), response.code
        title = label[0].upper() + label[1:]
        stopped = ServerNotRunning(
            f"{title} is not running: start your server first, from the hub's home page."
        )
        if 300 <= code < 400:
            location = urlsplit(response.headers.get("Location", "")).path
            if "/spawn-pending/" in location:
                return ServerNotRunning(f"{title} is still starting; try again when it is ready.")
            if "/hub/user/" in location:  # the proxy has no route to it: the hub answers
                return stopped
            return NotAllowed(
                f"{title} asked for a login: this login cannot reach it "
                "(log out of the hub and in again)."
            )
        if code == 424:  # JupyterHub's answer for a stopped server
            return stopped
        if code == 405:  # e.g. a Zeppelin server, which has no contents API
            return ServerRefused(f"{title} has no Jupyter contents API: is it JupyterLab?")
        if code in (401, 403):
            return NotAllowed(
                f"{title} refused this login or token: it needs access to your servers "
                "(access:servers). Log in to the hub again, or use a token with that scope."
            )
        if code == 404:
            return ContentsNotFound(f"There is no {path!r} in {label}.")
        if code in (400, 409):
            return ServerRefused(f"{title} refused: {_message(response)}")
        return ServerUnreachable(f"{title} answered {code}: {_message(response)}")


def _message(response: HTTPResponse) -> str:
    """The server's own message from a JSON error body, cut short."""
    try:
        message = json.loads(response.body or b"{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return (str(message) or response.reason or "no message")[:300]

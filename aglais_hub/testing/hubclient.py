"""A scripted browser for the hub: OIDC login through the provider's pages, spawning,
and running code in a notebook kernel. Plain HTTP and WebSocket, no mocks: every
request goes through the real proxy to the real hub, provider and user server.
"""

from __future__ import annotations

import json
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import requests
import websocket


class _Forms(HTMLParser):
    """Collects each <form>'s action and its named inputs (a radio group: the checked
    choice, else the first)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            fields = self.forms[-1]["fields"]
            if a.get("type") == "radio" and a["name"] in fields and "checked" not in a:
                return
            fields[a["name"]] = a.get("value", "")


def forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class LoginRefused(AssertionError):
    """The hub or the provider refused a login; ``response`` says why."""

    def __init__(self, response: requests.Response):
        self.response = response
        super().__init__(f"login refused with {response.status_code} at {response.url}")


class _SameOriginSession(requests.Session):
    """A session that, as a browser does, sends ``Origin`` with an unsafe request its own
    page makes to a user's server (the auth proxy refuses a cookie request it cannot
    tell from a cross-site one). An explicit ``Origin`` header wins."""

    def __init__(self, user_servers: str):
        super().__init__()
        self.user_servers = user_servers
        parts = urlparse(user_servers)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        unsafe = (prepared.method or "GET").upper() not in ("GET", "HEAD", "OPTIONS")
        if unsafe and (prepared.url or "").startswith(self.user_servers):
            prepared.headers.setdefault("Origin", self.origin)
        return prepared


class HubClient:
    """One user's browser session against the hub at ``base_url``."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/") + "/"
        self.session = _SameOriginSession(self.url("user/"))

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.session.get(self.url(path), timeout=60, **kwargs)

    def login(self, username: str, password: str) -> requests.Response:
        """Log in through /hub/oauth_login, the provider's login and consent pages.

        Returns the page the hub lands on; raises LoginRefused on a 4xx/5xx.
        """
        page = self.get("hub/oauth_login")
        for _ in range(4):
            if page.status_code >= 400 or urlparse(page.url).port == urlparse(self.base_url).port:
                break
            form = forms_of(page.text)[0]
            fields = form["fields"]
            if "login" in fields:
                fields.update(login=username, password=password)
            page = self.session.post(urljoin(page.url, form["action"]), data=fields, timeout=60)
        if page.status_code >= 400:
            raise LoginRefused(page)
        return page

    def get_with_consent(self, path: str) -> requests.Response:
        """GET, accepting the hub's "authorize access" page on the way (shown when an
        admin opens another user's server)."""
        page = self.get(path)
        forms = [
            f for f in forms_of(page.text) if "oauth2/authorize" in urljoin(page.url, f["action"])
        ]
        if forms:
            page = self.session.post(
                urljoin(page.url, forms[0]["action"]), data=forms[0]["fields"], timeout=60
            )
        return page

    def xsrf_headers(self, path: str = "hub/") -> dict[str, str]:
        token = self.session.cookies.get("_xsrf", path=urlparse(self.url(path)).path)
        return {"X-XSRFToken": token} if token else {}

    def start_server(
        self, server_name: str = "", timeout: float = 180, profile: str | None = None
    ) -> dict:
        """Start a server from the spawn page and follow its progress to the end.

        Returns the final progress event (``ready`` or ``failed`` with a message).
        """
        user = self.whoami()["name"]
        suffix = f"/{server_name}" if server_name else ""
        page = self.get(f"hub/spawn/{user}{suffix}")
        forms = [f for f in forms_of(page.text) if "spawn" in f["action"]]
        if page.status_code == 200 and forms:  # an options form: submit its defaults
            fields = forms[0]["fields"]
            if profile:
                fields["profile"] = profile
            self.session.post(urljoin(page.url, forms[0]["action"]), data=fields, timeout=60)
        return self.follow_progress(user, server_name, timeout)

    def follow_progress(self, user: str, server_name: str = "", timeout: float = 180) -> dict:
        suffix = f"/{server_name}" if server_name else ""
        url = self.url(f"hub/api/users/{user}/servers/{server_name}/progress")
        if not server_name:
            url = self.url(f"hub/api/users/{user}/server/progress")
        deadline = time.monotonic() + timeout
        last: dict = {}
        events: list[dict] = []
        while time.monotonic() < deadline:
            with self.session.get(url, stream=True, timeout=timeout) as response:
                for line in response.iter_lines(decode_unicode=True):
                    if line and line.startswith("data:"):
                        last = json.loads(line[5:])
                        events.append(last)
                        if last.get("ready") or last.get("failed"):
                            last["events"] = events
                            return last
            time.sleep(0.5)
        raise TimeoutError(f"server {user}{suffix} not ready after {timeout} s: {last}")

    def wait_stopped(self, user: str, server_name: str = "", timeout: float = 60) -> None:
        """Wait until the hub reports the server as neither running nor pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.get(f"hub/api/users/{user}").json()["servers"].get(server_name)
            if not server:
                return
            time.sleep(0.3)
        raise TimeoutError(f"server {user}/{server_name} still there after {timeout} s")

    def new_token(self, note: str = "test") -> str:
        """A hub API token of the logged-in user (as the hub's Token page makes one)."""
        user = self.whoami()["name"]
        response = self.session.post(
            self.url(f"hub/api/users/{user}/tokens"),
            json={"note": note},
            headers=self.xsrf_headers(),
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["token"]

    def whoami(self) -> dict:
        response = self.get("hub/api/user")
        response.raise_for_status()
        return response.json()

    def open_server(self, server_path: str) -> requests.Response:
        """Open ``user/<name>/[<server>/]lab`` (passing the server's own hub OAuth)."""
        return self.get(server_path.rstrip("/") + "/lab")

    def run_code(self, server_path: str, code: str, timeout: float = 180) -> str:
        """Run ``code`` in a new kernel of the server; return its output (or raise)."""
        prefix = server_path.strip("/") + "/"
        headers = self.xsrf_headers(prefix)
        response = self.session.post(
            self.url(prefix + "api/kernels"), json={"name": "python3"}, headers=headers, timeout=60
        )
        response.raise_for_status()
        kernel_id = response.json()["id"]
        try:
            return self._execute(prefix, kernel_id, code, timeout)
        finally:
            self.session.delete(self.url(f"{prefix}api/kernels/{kernel_id}"), headers=headers)

    def _execute(self, prefix: str, kernel_id: str, code: str, timeout: float) -> str:
        ws_url = self.url(f"{prefix}api/kernels/{kernel_id}/channels").replace("http", "ws", 1)
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        ws = websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        output: list[str] = []
        try:
            while True:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    output.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    output.append(content["data"].get("text/plain", "") + "\n")
                elif kind == "error":
                    raise RuntimeError("\n".join(content["traceback"]))
                elif kind == "status" and content["execution_state"] == "idle":
                    return "".join(output)
        finally:
            ws.close()

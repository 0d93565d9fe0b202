"""A real hub running the real Git service (gitsync), for its API tests.

The hub logs users in with JupyterHub's dummy authenticator (no identity provider);
users and their API tokens are made through the hub's REST API with the harness's admin
service token, and `GitsyncHub.browser` logs a user in as a browser does (the hub's
login form, then the service's OAuth). Everything else is the production path: the
values file, `hub_config`, the managed service, LocalSparkSpawner running JupyterLab.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from urllib.parse import urljoin

import requests
import yaml

from ..config import apply_defaults
from .hubclient import forms_of
from .hubprocess import HubProcess
from .platform import demo_values, free_port
from .reservations import HUB_CONFIG


def gitsync_values(data_dir: Path) -> dict:
    """The demo's values with the Git service on and no reservation service (servers
    start at once), JupyterLab as every user's server."""
    values = demo_values(reservations={"enabled": False}, gitsync={"enabled": True})
    values["spawner"]["localSpark"].update(dataDir=str(data_dir), notebook="jupyterlab")
    return apply_defaults(values)


class GitsyncHub(HubProcess):
    """``jupyterhub`` with the Git service managed by it, on free ports. Its key is the
    hub's own ``JUPYTERHUB_CRYPT_KEY`` (the fallback) unless ``key`` is given."""

    def __init__(self, workdir: Path, values: dict | None = None, key: str | None = None) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        values = json.loads(json.dumps(values or gitsync_values(workdir / "data")))
        values["gitsync"]["port"] = free_port()  # never the production port (8091)
        self.values_file = workdir / "values.yaml"
        env = {
            "AGLAIS_VALUES": str(self.values_file),
            "AGLAIS_GITSYNC_API_TOKEN": secrets.token_hex(16),
        }
        if key is not None:
            env["AGLAIS_GITSYNC_KEY"] = key
        super().__init__(workdir, HUB_CONFIG, env)
        # the service reaches users' servers through this hub's proxy, on its free port
        values["gitsync"]["serversUrl"] = self.url
        self.values_file.write_text(yaml.safe_dump(values))
        self.values = values
        self.service_port = values["gitsync"]["port"]

    @property
    def key(self) -> str:
        """The key the service seals tokens with."""
        return self.env.get("AGLAIS_GITSYNC_KEY") or self.env["JUPYTERHUB_CRYPT_KEY"]

    @property
    def service_url(self) -> str:
        return f"{self.url}/services/gitsync/"

    @property
    def log_file(self) -> Path:
        """The hub's output, the managed service's included."""
        return self.workdir / "hub.log"

    @property
    def db_files(self) -> list[Path]:
        """The service's SQLite database and its WAL (recent writes live there)."""
        return sorted(self.workdir.glob("gitsync.sqlite*"))

    def start(self) -> GitsyncHub:
        super().start()
        self.wait_for_service()
        return self

    def wait_for_service(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.service_url + "api/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the Git service did not answer within {timeout} s")

    def add_user(self, name: str, scopes: list[str] | None = None) -> str:
        """Create a hub user (``admin`` is the harness's admin); a hub API token of
        theirs, with ``scopes`` (default: all the user's own rights)."""
        api = self.url + "/hub/api/"
        response = self.api.post(api + f"users/{name}")
        if response.status_code not in (201, 409):
            response.raise_for_status()
        body: dict = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        token = self.api.post(api + f"users/{name}/tokens", json=body)
        token.raise_for_status()
        return token.json()["token"]

    def client(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        return session

    def browser(self, name: str) -> requests.Session:
        """A browser session of ``name``: the hub's login form, then the service's OAuth
        (no consent page); its cookies are the service's login."""
        session = requests.Session()
        page = session.get(self.url + "/hub/login", timeout=30)
        form = forms_of(page.text)[0]
        fields = {**form["fields"], "username": name, "password": name}
        session.post(urljoin(page.url, form["action"]), data=fields, timeout=30)
        landed = session.get(self.service_url, timeout=30)
        if landed.status_code != 200 or not landed.url.startswith(self.service_url):
            raise AssertionError(f"{name} did not land on the service: {landed.url}")
        return session

    def start_server(self, user: str, timeout: float = 120) -> None:
        """Start ``user``'s default server and wait until the hub says it is ready."""
        api = self.url + f"/hub/api/users/{user}"
        response = self.api.post(api + "/server", json={}, timeout=60)
        if response.status_code not in (201, 202):
            raise AssertionError(f"{user}'s server: {response.status_code} {response.text}")
        self._wait_server(user, True, timeout)

    def stop_server(self, user: str, timeout: float = 60) -> None:
        self.api.delete(self.url + f"/hub/api/users/{user}/server", timeout=60)
        self._wait_server(user, False, timeout)

    def _wait_server(self, user: str, ready: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api.get(self.url + f"/hub/api/users/{user}", timeout=10).json()
            server = (model.get("servers") or {}).get("")
            if bool(server and server.get("ready")) if ready else server is None:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{user}'s server did not become {'ready' if ready else 'stopped'}")

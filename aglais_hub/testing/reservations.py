"""A real hub running the real reservation service, for API tests and the benchmark.

The hub logs users in with JupyterHub's dummy authenticator (no identity provider);
users, groups and their API tokens are made through the hub's REST API with the
harness's admin service token. Everything else is the production path: the values
file, `hub_config`, the managed service, hub OAuth tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import requests
import yaml

from .hubprocess import HubProcess
from .platform import free_port

HUB_CONFIG = """
import os
from aglais_hub.config import load_values
from aglais_hub.hubconfig import hub_config
c.merge(hub_config(load_values(os.environ["AGLAIS_VALUES"]), os.environ))
c.Authenticator.admin_users = {"admin"}  # only config can make admins; services cannot
"""
# The hub notices a managed service died at its next poll, every 30 s and not
# configurable (the services' spawner reads no config): tests that kill the service
# on purpose poll faster, so a restart takes seconds.
FAST_RESTART = """
import jupyterhub.services.service as _service
from traitlets import Integer
class _PollingServiceSpawner(_service._ServiceSpawner):
    poll_interval = Integer({interval})
_service._ServiceSpawner = _PollingServiceSpawner
"""


class ReservationHub(HubProcess):
    """``jupyterhub`` with the reservation service managed by it, on free ports."""

    def __init__(
        self,
        workdir: Path,
        values: dict,
        db_url: str | None = None,
        env: dict[str, str] | None = None,
        restart_poll: int | None = None,
    ):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        values = json.loads(json.dumps(values))
        reservations = values.setdefault("reservations", {})
        # always a free port: default-filled values carry the production port (8090)
        reservations["port"] = free_port()
        # the reservation service alone (the demo's values turn the Git service on; its
        # own tests start it, with its key, in testing/gitsynchub.py)
        values.setdefault("gitsync", {})["enabled"] = False
        self.values_file = workdir / "values.yaml"
        self.values_file.write_text(yaml.safe_dump(values))
        self.gate_token = secrets.token_hex(16)
        extra = {
            "AGLAIS_VALUES": str(self.values_file),
            "AGLAIS_RESERVATIONS_API_TOKEN": secrets.token_hex(16),
            "AGLAIS_GATE_TOKEN": self.gate_token,
            **({"AGLAIS_RESERVATIONS_DB_URL": db_url} if db_url else {}),
            **(env or {}),
        }
        config = HUB_CONFIG + (FAST_RESTART.format(interval=restart_poll) if restart_poll else "")
        super().__init__(workdir, config, extra)
        self.service_port = reservations["port"]
        self.external = bool(reservations.get("url"))

    @property
    def service_url(self) -> str:
        return f"{self.url}/services/reservations/"

    def start(self) -> ReservationHub:
        super().start()
        if not self.external:  # an external service is the test's business
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
        raise TimeoutError(f"the reservation service did not answer within {timeout} s")

    def add_user(self, name: str, groups: list[str] = (), admin: bool = False) -> str:
        """Create a hub user in ``groups``; return a hub API token of theirs."""
        api = self.url + "/hub/api/"
        if admin and name != "admin":
            raise ValueError("the harness's only admin is 'admin' (set in the hub's config)")
        response = self.api.post(api + f"users/{name}")
        if response.status_code not in (201, 409):
            response.raise_for_status()
        for group in groups:
            if self.api.get(api + f"groups/{group}").status_code == 404:
                self.api.post(api + f"groups/{group}").raise_for_status()
            self.api.post(api + f"groups/{group}/users", json={"users": [name]}).raise_for_status()
        token = self.api.post(api + f"users/{name}/tokens", json={"note": "test"})
        token.raise_for_status()
        return token.json()["token"]

    def client(self, token: str) -> requests.Session:
        """A session that talks to the service with ``token``."""
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        return session

    def gate(self) -> requests.Session:
        """A session holding the hub's spawn-gate token (what spawners present)."""
        return self.client(self.gate_token)

    def service_pid(self) -> int:
        return service_pid(self.service_port)

    def kill_service(self) -> None:
        """Kill the service hard (the hub restarts managed services that die)."""
        os.kill(self.service_pid(), signal.SIGKILL)


def service_pid(port: int) -> int:
    """The pid of the reservation service the hub runs on ``port`` (a managed child)."""
    marker = f"JUPYTERHUB_SERVICE_URL=http://127.0.0.1:{port}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"reservations" in cmdline and b"serve" in cmdline and marker in environ:
            return int(proc.name)
    raise LookupError(f"no reservation service process on port {port}")


def restart_service(port: int, health_url: str, timeout: float = 60) -> None:
    """Kill the service hard and wait until the hub has started a new one that answers."""
    old = service_pid(port)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if service_pid(port) != old and requests.get(health_url, timeout=2).ok:
                return
        except (LookupError, requests.RequestException):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the hub did not restart the reservation service within {timeout} s")

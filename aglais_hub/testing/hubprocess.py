"""A real `jupyterhub` process with a given config, for tests and benchmarks that drive
the hub through its REST API (no login: an admin service token stands in for users)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests

from ..demo import stop_process, wait_for_http
from ..hubconfig import proxy_command
from .platform import free_port

BASE_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = {proxy_command}
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}  # 202 at once, then progress
# appended, so services and roles of the config under test stay
c.JupyterHub.services.append({{"name": "driver", "api_token": "{token}"}})
c.JupyterHub.load_roles.append({{"name": "driver", "services": ["driver"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users", "proxy",
               "tokens", "admin:groups", "access:services"]}})
"""


class HubProcess:
    """``jupyterhub -f <config>`` on free ports; ``api`` is a session with an admin token."""

    def __init__(self, workdir: Path, extra_config: str, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        config = BASE_CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            token=self.token,
            proxy_command=json.dumps(proxy_command({"proxyCommand": []})),
        )
        self.config = self.workdir / "jupyterhub_config.py"
        # the harness settings (ports, token, dummy login) come last, so they win
        self.config.write_text(extra_config + config)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        self.env.update(JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32), **(env or {}))
        self.process: subprocess.Popen | None = None
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"token {self.token}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubProcess:
        log = (self.workdir / "hub.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(self.url + "/hub/api/", 60, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 60)

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Run the whole platform (`aglais-hub demo`) as a subprocess, for end-to-end tests.

Every part is real: the development OpenID Connect provider (npm oidc-provider),
JupyterHub, configurable-http-proxy and the user servers it spawns. Ports are
picked free, so a test platform never collides with a running demo.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..demo import DEMO_USERS, free_port, wait_for_http


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cached_sample_catalogue() -> Path:
    """The default sample catalogue, written once per machine under the cache
    (``${AGLAIS_CACHE:-~/.cache/aglais}/sample-catalogue/<key>``, keyed by the generator's
    code), so each test platform need not write its own."""
    from .. import sampledata
    from ..demo import sample_catalogue
    from .controlplane.build import cache_root

    digest = hashlib.sha256()
    for source in sorted(Path(sampledata.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return sample_catalogue(cache_root() / "sample-catalogue" / digest.hexdigest()[:16])


class Platform:
    """One `aglais-hub demo` process with its own state directory and ports. Its servers
    read the machine's cached sample catalogue unless the values name one, or
    ``own_catalogue`` leaves the demo to write its own into the state directory."""

    def __init__(
        self,
        state_dir: Path,
        values: dict,
        log_name: str = "platform.log",
        env: dict[str, str] | None = None,
        own_catalogue: bool = False,
    ):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.idp_port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.reservations_port = free_port()
        self.gitsync_port = free_port()
        values = json.loads(json.dumps(values))
        spawner = values.setdefault("spawner", {})
        if not own_catalogue and spawner.get("kind", "local-spark") == "local-spark":
            spawner.setdefault("catalogues", str(cached_sample_catalogue()))
        # always a free port: default-filled values carry the production port (8090)
        values.setdefault("reservations", {})["port"] = self.reservations_port
        self.reservations_enabled = values["reservations"].get("enabled", True)
        values.setdefault("gitsync", {})["port"] = self.gitsync_port
        self.gitsync_enabled = values["gitsync"].get("enabled", False)
        passthrough = values.setdefault("hub", {}).setdefault("config", {})
        passthrough.setdefault("JupyterHub", {})["hub_port"] = self.hub_port
        passthrough.setdefault("ConfigurableHTTPProxy", {})["api_url"] = (
            f"http://127.0.0.1:{self.proxy_api_port}"
        )
        self.values_file = self.state_dir / "test-values.yaml"
        self.values_file.write_text(yaml.safe_dump(values))
        self.log_file = self.state_dir / log_name
        self.process: subprocess.Popen | None = None
        self.env = dict(env or {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def reservations_url(self) -> str:
        """The reservation service through the proxy, as users reach it."""
        return self.url + "services/reservations/"

    @property
    def gitsync_url(self) -> str:
        """The Git service through the proxy, as users reach it."""
        return self.url + "services/gitsync/"

    @property
    def users_file(self) -> Path:
        return self.state_dir / "idp" / "users.json"

    def ports(self) -> list[int]:
        return [
            self.port,
            self.idp_port,
            self.hub_port,
            self.proxy_api_port,
            self.reservations_port,
            self.gitsync_port,
        ]

    def start(self, timeout: float = 90) -> float:
        """Start the demo; return the seconds until the hub answered through the proxy."""
        began = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "aglais_hub.cli",
            "demo",
            "--state-dir",
            str(self.state_dir),
            "--values",
            str(self.values_file),
            "--port",
            str(self.port),
            "--idp-port",
            str(self.idp_port),
        ]
        log = self.log_file.open("a")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        try:
            wait_for_http(self.url + "hub/api/", timeout, self.process)
            if self.reservations_enabled:  # spawns wait for the gate, so wait for it too
                wait_for_http(self.reservations_url + "api/health", timeout, self.process)
            if self.gitsync_enabled:
                wait_for_http(self.gitsync_url + "api/health", timeout, self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"platform did not start:\n{self.log_tail()}") from None
        return time.monotonic() - began

    def stop(self, timeout: float = 60) -> None:
        """Stop like Ctrl-C does, then check nothing of it is left listening."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(
                    f"demo did not stop in {timeout} s:\n{self.log_tail()}"
                ) from None

    def leftover_ports(self) -> list[int]:
        return [p for p in self.ports() if port_open(p)]

    def set_user(self, name: str, groups: list[str], **extra: object) -> None:
        """Add or change a user at the identity provider (read at each request)."""
        # before the first start the demo users are not written yet: start from them
        users = (
            json.loads(self.users_file.read_text())
            if self.users_file.exists()
            else json.loads(json.dumps(DEMO_USERS))
        )
        users.setdefault(name, {"password": name}).update(groups=groups, **extra)
        self.users_file.parent.mkdir(parents=True, exist_ok=True)
        self.users_file.write_text(json.dumps(users, indent=2))

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def demo_values(**overrides: object) -> dict:
    """The demo's values (config/demo.yaml) with top-level sections updated."""
    from ..hubconfig import PROJECT_ROOT

    values = yaml.safe_load((PROJECT_ROOT / "config" / "demo.yaml").read_text())
    for section, update in overrides.items():
        values.setdefault(section, {}).update(update)
    return values


__all__ = ["DEMO_USERS", "Platform", "demo_values", "free_port", "port_open"]

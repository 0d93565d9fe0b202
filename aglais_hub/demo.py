"""`aglais-hub demo`: the whole platform on this machine.

Starts the development OpenID Connect provider and a real JupyterHub (which
starts configurable-http-proxy and, later, its services), prints the URL and
the demo logins, and stops every child on Ctrl-C. State (hub database, cookie
secret, crypt key, client secret, the provider's keys and users) lives in the
state directory and survives a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import sampledata
from .config import load_values
from .hubconfig import PROJECT_ROOT, callback_url, public_url

DEMO_USERS = {
    "alice": {"password": "alice", "groups": ["users"], "name": "Alice Astronomer"},
    "bob": {"password": "bob", "groups": ["users", "power"], "name": "Bob Bigdata"},
    "admin": {"password": "admin", "groups": ["admins"], "name": "Ada Admin"},
    "mallory": {"password": "mallory", "groups": [], "name": "Mallory (in no group)"},
}
IDP_SCRIPT = Path(__file__).resolve().parent / "devidp" / "server.mjs"
HUB_CONFIG = PROJECT_ROOT / "config" / "jupyterhub_config.py"
NODE_BIN = PROJECT_ROOT / "node_modules" / ".bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret(path: Path, nbytes: int = 32) -> str:
    """A hex secret kept in ``path``: made once, read back on every later start."""
    if not path.exists():
        path.write_text(secrets.token_hex(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class DemoSetup:
    """Everything the demo's processes need, prepared on disk."""

    state_dir: Path
    values_file: Path
    issuer: str
    idp_port: int
    hub_url: str
    env: dict[str, str] = field(default_factory=dict)
    gitsync: bool = False  # the Git service runs (gitsync.enabled)

    @property
    def hub_dir(self) -> Path:
        return self.state_dir / "hub"

    @property
    def idp_dir(self) -> Path:
        return self.state_dir / "idp"


def sample_catalogue(directory: Path) -> Path:
    """The default sample catalogue in ``directory``, written on the first start only
    (a few seconds), so the example notebooks have data to read."""
    from .sampledata.catalogue import MANIFEST, write_catalogue

    if not (directory / MANIFEST).is_file():
        print(f"Writing the sample catalogue into {directory} (once) ...", flush=True)
        write_catalogue(
            directory,
            sampledata.DEFAULT_ROWS,
            sampledata.DEFAULT_SEED,
            sampledata.DEFAULT_FILES,
            force=False,
        )
    return directory


def prepare(state_dir: Path, values_file: Path, port: int | None, idp_port: int) -> DemoSetup:
    """Write the effective values and secrets into ``state_dir`` (kept across restarts)."""
    state_dir = state_dir.resolve()
    for sub in ("hub", "idp"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(values_file).read_text()) or {}
    issuer = f"http://127.0.0.1:{idp_port}"
    raw.setdefault("hub", {})
    if port is not None:
        raw["hub"]["port"] = port
    raw.setdefault("auth", {})["issuer"] = issuer
    spawner = raw.setdefault("spawner", {})
    if spawner.get("kind", "local-spark") == "local-spark" and not spawner.get("catalogues"):
        spawner["catalogues"] = str(sample_catalogue(state_dir / "catalogues"))
    gitsync = raw.get("gitsync") or {}
    if gitsync.get("enabled") and not gitsync.get("url") and "port" not in gitsync:
        gitsync["port"] = free_port()  # a managed service: any free port will do
    effective = state_dir / "values.yaml"
    effective.write_text(
        "# Written by `aglais-hub demo` from "
        + str(values_file)
        + "; edit that file instead.\n"
        + yaml.safe_dump(raw, sort_keys=False)
    )
    values = load_values(effective)  # fail early, with key paths, on a bad values file
    users_file = state_dir / "idp" / "users.json"
    if not users_file.exists():
        users_file.write_text(json.dumps(DEMO_USERS, indent=2) + "\n")
    client_secret = _secret(state_dir / "client-secret")
    path = os.pathsep.join([str(NODE_BIN), os.environ.get("PATH", "")])
    env = {
        **os.environ,
        "PATH": path,
        "AGLAIS_VALUES": str(effective),
        "JUPYTERHUB_CRYPT_KEY": _secret(state_dir / "crypt-key"),
        "AGLAIS_RESERVATIONS_API_TOKEN": _secret(state_dir / "reservations-token"),
        "AGLAIS_GATE_TOKEN": _secret(state_dir / "gate-token"),
        # the Git service's own key (tokens stay readable across restarts) and token
        "AGLAIS_GITSYNC_KEY": _secret(state_dir / "gitsync-key"),
        "AGLAIS_GITSYNC_API_TOKEN": _secret(state_dir / "gitsync-token"),
        "OAUTH_CLIENT_SECRET": client_secret,
        "ISSUER": issuer,
        "PORT": str(idp_port),
        "CLIENT_ID": values["auth"]["clientId"],
        "CLIENT_SECRET": client_secret,
        "REDIRECT_URIS": callback_url(values["hub"]),
        "USERS_FILE": str(users_file),
        "STATE_DIR": str(state_dir / "idp"),
    }
    hub_url = public_url(values["hub"]) + values["hub"]["baseUrl"]
    return DemoSetup(
        state_dir, effective, issuer, idp_port, hub_url, env, values["gitsync"]["enabled"]
    )


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200; fail early if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.HTTPError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def banner(setup: DemoSetup) -> str:
    gitsync = ""
    if setup.gitsync:
        gitsync = f"Link Git repositories at {setup.hub_url.rstrip('/')}/services/gitsync/\n"
    logins = "\n".join(
        f"  {name:8} password {user['password']:8} groups: {', '.join(user['groups']) or '(none)'}"
        for name, user in DEMO_USERS.items()
    )
    return (
        f"\nAglais Hub demo is running at {setup.hub_url}\n"
        f"Sign in with one of the demo logins (mallory shows what a refused login looks like):\n"
        f"{logins}\n"
        f"Book a cluster at {setup.hub_url.rstrip('/')}/services/reservations/\n"
        f"{gitsync}"
        f"Identity provider: {setup.issuer}   state: {setup.state_dir}\n"
        "Press Ctrl-C to stop.\n"
    )


def run(state_dir: Path, values_file: Path, port: int | None = None, idp_port: int = 5556) -> int:
    """Run the demo in the foreground until SIGINT or SIGTERM; return an exit code."""
    if not HUB_CONFIG.exists():
        sys.exit(f"{HUB_CONFIG} not found: run the demo from a checkout of the repository")
    setup = prepare(state_dir, values_file, port, idp_port)
    children: list[subprocess.Popen] = []

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Set both explicitly: a shell that starts us in the background ignores SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        idp = subprocess.Popen(
            ["node", str(IDP_SCRIPT)], env=setup.env, cwd=setup.idp_dir, start_new_session=True
        )
        children.append(idp)
        wait_for_http(setup.issuer + "/.well-known/openid-configuration", 30, idp)
        hub = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)],
            env=setup.env,
            cwd=setup.hub_dir,
            start_new_session=True,
        )
        children.append(hub)
        wait_for_http(setup.hub_url.rstrip("/") + "/hub/api/", 60, hub)
        print(banner(setup), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c for c in children if c.poll() is not None]
        print(f"{failed[0].args[0]} stopped unexpectedly; stopping the demo.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the demo ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave orphans.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        # The hub first: it stops the proxy and the user servers it started.
        for child in reversed(children):
            stop_process(child)

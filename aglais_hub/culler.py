"""The idle culler (jupyterhub-idle-culler) as a hub-managed service with a narrow role.

`culler_service(values)` is pure: the ``culler`` values in, the JupyterHub service and
role definitions out. Reserved servers need no special case here: the reservation
service reports activity for them while their booking runs, so they never look idle.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from traitlets.config import Config

SERVICE_NAME = "idle-culler"
TOKEN_ENV = "AGLAIS_CULLER_API_TOKEN"  # stable token from the chart's Secret
# What jupyterhub-idle-culler needs to stop idle servers, and nothing more
# (no admin:users: it never deletes users).
SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def culler_service(values: dict, token: str = "", python: str = sys.executable) -> dict:
    """The service and its role: ``{"service": {...}, "role": {...}}``."""
    culler = values["culler"]
    command = [
        python,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={culler['timeout']}",
        f"--cull-every={culler['every']}",
        f"--concurrency={culler['concurrency']}",
    ]
    if culler["maxAge"]:
        command.append(f"--max-age={culler['maxAge']}")
    if culler["removeNamedServers"]:
        command.append("--remove-named-servers=True")
    service: dict = {"name": SERVICE_NAME, "command": command}
    if token:  # else the hub makes a new one at every start
        service["api_token"] = token
    role = {"name": SERVICE_NAME, "scopes": list(SCOPES), "services": [SERVICE_NAME]}
    return {"service": service, "role": role}


def add_culler(c: Config, values: dict, environ: Mapping[str, str]) -> None:
    """Append the culler to ``c.JupyterHub.services`` and ``load_roles`` when enabled
    (``environ`` holds its token, as for the hub's other services)."""
    if not values.get("culler", {}).get("enabled"):
        return
    found = culler_service(values, token=environ.get(TOKEN_ENV, ""))
    c.JupyterHub.services.append(found["service"])
    c.JupyterHub.load_roles.append(found["role"])

"""The Git service's view of the values file and its environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aglais_hub.hubconfig import public_url

DB_URL_ENV = "AGLAIS_GITSYNC_DB_URL"  # a URL with a password comes from a Secret


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with, read once."""

    port: int
    db_url: str
    workdir: Path  # working copies of linked repositories (the git layer's)
    servers_url: str  # the proxy's address and the hub's base URL: users' servers are below


def servers_url(values: Mapping) -> str:
    """Where users' servers are, as the service reaches them: ``gitsync.serversUrl``
    (else the hub's public address) followed by the hub's base URL. Pure."""
    hub = values["hub"]
    origin = values["gitsync"]["serversUrl"] or public_url(hub)
    base = hub["baseUrl"].strip("/")
    return origin.rstrip("/") + "/" + (base + "/" if base else "")


def settings_from_values(values: Mapping, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the ``gitsync`` and ``hub`` sections (default-filled)."""
    g = values["gitsync"]
    return Settings(
        port=g["port"],
        db_url=environ.get(DB_URL_ENV) or g["db"]["url"],
        workdir=Path(g["workdir"]),
        servers_url=servers_url(values),
    )

"""``aglais-hub gitsync serve``: run the Git service as a JupyterHub service.

The hub starts it (managed service); JupyterHub's service environment tells it where
the hub is: ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_SERVICE_URL``. Its key comes from
``AGLAIS_GITSYNC_KEY`` or ``JUPYTERHUB_CRYPT_KEY`` (vault.py); without one it does not
start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Mapping
from urllib.parse import urlparse

from aglais_hub.serviceapi import BODY_HARD_MAX

from .app import make_app
from .page import PageHandler
from .service import Service
from .settings import settings_from_values
from .store import Store
from .vault import Vault

log = logging.getLogger("aglais.gitsync")
DEFAULT_PREFIX = "/services/gitsync/"


def cookie_secret(token: str) -> bytes:
    """Stable across restarts (browser sessions survive), secret as long as the token is."""
    explicit = os.environ.get("AGLAIS_GITSYNC_COOKIE_SECRET")
    if explicit:
        return explicit.encode()
    return hashlib.sha256(b"aglais-gitsync-cookie:" + token.encode()).digest()


def build(values: dict, environ: Mapping[str, str] = os.environ) -> Service:
    """The service from values and the environment: its key first (KeyMissing without
    one), then the database, migrated, and the working-copy folder."""
    vault = Vault.from_environ(environ)
    settings = settings_from_values(values, environ)
    store = Store(settings.db_url)
    store.migrate()
    settings.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Service(store, vault, settings)


async def serve(service: Service) -> None:
    """Listen until SIGTERM/SIGINT."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", DEFAULT_PREFIX)
    app = make_app(
        service,
        prefix,
        cookie_secret(os.environ["JUPYTERHUB_API_TOKEN"]),
        page_handlers=[("", PageHandler)],
    )
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    port = url.port or service.settings.port
    address = os.environ.get("AGLAIS_GITSYNC_IP") or url.hostname or "127.0.0.1"
    server = app.listen(port, address, xheaders=True, max_body_size=BODY_HARD_MAX)
    log.info(
        "Git service on http://%s:%d%s (database %s; users' servers at %s)",
        address,
        port,
        prefix,
        service.store.engine.url.render_as_string(hide_password=True),
        service.settings.servers_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()
    service.store.dispose()

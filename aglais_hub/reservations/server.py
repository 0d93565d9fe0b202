"""``aglais-hub reservations serve``: run the service as a JupyterHub service.

The hub starts it (demo) or Kubernetes does (chart); either way JupyterHub's
service environment tells it where the hub is: ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_SERVICE_URL``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from urllib.parse import urlparse

from aglais_hub.serviceapi import BODY_HARD_MAX

from .app import make_app
from .hubapi import HubDirectory
from .ledger import Ledger
from .page import PageHandler
from .scheduler import Scheduler, webhook_notifier
from .service import Service
from .settings import settings_from_values
from .store import Store

log = logging.getLogger("aglais.reservations")
DEFAULT_PREFIX = "/services/reservations/"


def database_url(values: dict) -> str:
    """The bookings database: ``AGLAIS_RESERVATIONS_DB_URL`` (a Secret in the chart) wins."""
    return os.environ.get("AGLAIS_RESERVATIONS_DB_URL") or values["reservations"]["db"]["url"]


def cookie_secret(token: str) -> bytes:
    """Stable across restarts (browser sessions survive), secret as long as the token is."""
    explicit = os.environ.get("AGLAIS_RESERVATIONS_COOKIE_SECRET")
    if explicit:
        return explicit.encode()
    return hashlib.sha256(b"aglais-reservations-cookie:" + token.encode()).digest()


def build(values: dict, store: Store | None = None) -> tuple[Service, Scheduler]:
    """The service and its scheduler from values and the hub's service environment."""
    settings = settings_from_values(values)
    store = store or Store(database_url(values))
    store.migrate()
    ledger = Ledger(store, settings)
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    hub = HubDirectory(os.environ["JUPYTERHUB_API_URL"], token)
    gate = frozenset(os.environ.get("AGLAIS_GATE_SERVICES", "spawn-gate").split(","))
    service = Service(ledger, hub, gate_services=gate)
    service.notify = webhook_notifier(settings.webhook_url)
    scheduler = Scheduler(ledger, hub, service.notify)
    return service, scheduler


async def serve(values: dict) -> None:
    """Listen until SIGTERM/SIGINT."""
    service, scheduler = build(values)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", DEFAULT_PREFIX)
    app = make_app(
        service,
        prefix,
        cookie_secret(os.environ["JUPYTERHUB_API_TOKEN"]),
        page_handlers=[("", PageHandler)],
    )
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    port = url.port or values["reservations"]["port"]
    address = os.environ.get("AGLAIS_RESERVATIONS_IP") or url.hostname or "127.0.0.1"
    # bodies above BODY_HARD_MAX are not even read; the API answers 413 above BODY_MAX
    server = app.listen(port, address, xheaders=True, max_body_size=BODY_HARD_MAX)
    scheduler.start()
    log.info(
        "Reservation service on http://%s:%d%s (database %s)",
        address,
        port,
        prefix,
        service.ledger.store.engine.url.render_as_string(hide_password=True),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()
    await scheduler.stop()
    service.ledger.store.dispose()

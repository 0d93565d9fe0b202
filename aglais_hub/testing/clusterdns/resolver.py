"""Cluster DNS names → addresses, as a pod's resolver with ``ndots:5`` and search
``<ns>.svc.cluster.local svc.cluster.local cluster.local`` would get them from cluster
DNS (ours; pure functions, no imports beyond the standard library, because
``sitecustomize`` loads this file by path into processes that may not have the
``aglais_hub`` package).

The DNS file (written by aglais_hub.testing.serviceproxy) is JSON:
``{"services": {"<ns>/<name>": {"clusterIP": "127.96.x.y" | null, "ips": [ready
endpoint IPs]}}}``. A Service with a clusterIP resolves to it; a headless one to its
ready endpoints' IPs.
"""

from __future__ import annotations

import json
import os
import re

DOMAIN = "cluster.local"
_SERVICE_FQDN = re.compile(
    r"([a-z0-9]([a-z0-9-]*[a-z0-9])?)\.([a-z0-9]([a-z0-9-]*[a-z0-9])?)"
    r"\.svc\.cluster\.local"
)
NDOTS = 5


def search_list(namespace: str | None) -> list[str]:
    """A pod's resolv.conf search domains (on the host, without a namespace, the last two)."""
    found = [f"{namespace}.svc.{DOMAIN}"] if namespace else []
    return [*found, f"svc.{DOMAIN}", DOMAIN]


def candidates(host: str, namespace: str | None) -> list[str]:
    """The fully qualified names a resolver tries for ``host``, in its order."""
    name = host.lower()
    if name.endswith("."):
        return [name[:-1]]
    expanded = [f"{name}.{domain}" for domain in search_list(namespace)]
    return [name, *expanded] if name.count(".") >= NDOTS else [*expanded, name]


def lookup(services: dict, host: str, namespace: str | None = None) -> list[str] | None:
    """The addresses of ``host`` if it names a Service (``[]``: a cluster name that does
    not exist, NXDOMAIN); None when it is no cluster name (the normal resolver's turn)."""
    if not isinstance(host, str) or not host or host.replace(".", "").isdigit():
        return None
    cluster_name = False
    for fqdn in candidates(host, namespace):
        match = _SERVICE_FQDN.fullmatch(fqdn)
        if match is None:
            continue
        entry = services.get(f"{match.group(3)}/{match.group(1)}")
        if entry is None:
            continue
        ip = entry.get("clusterIP")
        if ip and ip != "None":
            return [ip]
        return list(entry.get("ips") or [])
    name = host.lower().rstrip(".")
    if name == DOMAIN or name.endswith("." + DOMAIN):
        cluster_name = True  # a name in the cluster domain that does not exist
    return [] if cluster_name else None


class DnsFile:
    """The services of a DNS file, read again whenever its mtime or size changes."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = os.fspath(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._services: dict = {}

    def services(self) -> dict:
        if not self.path:
            return {}
        try:
            info = os.stat(self.path)
        except OSError:
            return self._services
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self._services = json.load(handle).get("services") or {}
                self._stamp = stamp
            except (OSError, ValueError):  # replaced while we read: keep the last one
                pass
        return self._services

    def lookup(self, host: str, namespace: str | None = None) -> list[str] | None:
        return lookup(self.services(), host, namespace)

"""OUR stand-in for cluster DNS on the testing cluster (which runs no DNS server).

The service proxy (aglais_hub.testing.serviceproxy) keeps a DNS file of every Service
(its clusterIP, and its ready endpoints' IPs for headless ones); processes resolve
Service names from it with a pod's rules (``ndots:5``, search ``<ns>.svc.cluster.local
svc.cluster.local cluster.local``): ``name`` (in the pod's namespace), ``name.ns``,
``name.ns.svc``, ``name.ns.svc.cluster.local`` (and with a trailing dot). Other names go
to the normal resolver; a missing name under ``cluster.local`` is not found.

- ``site/sitecustomize.py`` (``site`` first on PYTHONPATH) patches Python's
  socket.getaddrinfo in every process a node agent starts;
- ``preload.cjs`` (``NODE_OPTIONS=--require``) patches Node's dns.lookup;
- ``resolving(dns_file, namespace=None)`` patches getaddrinfo in the current process
  for a ``with`` block (tests on the host);
- ``resolver.lookup`` is the pure rule both use;
- ``hosts_lines(dns_file, namespace)``: ``/etc/hosts`` lines for a namespace's Services,
  for programs none of this reaches (a browser).

Not done: pod hostnames (``<hostname>.<subdomain>.<ns>.svc``), SRV records, ExternalName
Services, resolvers that bypass getaddrinfo/dns.lookup (aiodns, dns.resolve*, Go or Java
programs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import _patch
from .resolver import DnsFile, lookup

DIRECTORY = Path(__file__).resolve().parent
SITE = DIRECTORY / "site"  # only sitecustomize.py: on PYTHONPATH it shadows nothing
PRELOAD = DIRECTORY / "preload.cjs"
FILE_ENV = "AGLAIS_CLUSTER_DNS_FILE"
NAMESPACE_ENV = "AGLAIS_POD_NAMESPACE"

__all__ = [
    "DIRECTORY",
    "PRELOAD",
    "SITE",
    "DnsFile",
    "lookup",
    "hosts_lines",
    "process_env",
    "resolving",
]


@contextmanager
def resolving(dns_file: Path | str, namespace: str | None = None) -> Iterator[DnsFile]:
    """Service names resolve in this process (socket.getaddrinfo and gethostbyname) while
    the block runs, as in a pod of ``namespace`` (None: only ``name.ns`` forms)."""
    file = DnsFile(dns_file)
    before = _patch.install(lambda host: file.lookup(host, namespace))
    try:
        yield file
    finally:
        _patch.restore(before)


def process_env(
    env: dict[str, str], dns_file: Path | str, namespace: str, pod_ip: str | None = None
) -> dict[str, str]:
    """``env`` with what a process needs to resolve Service names: PYTHONPATH led by
    ``SITE``, NODE_OPTIONS with ``--require preload.cjs``, the DNS file and namespace;
    with ``pod_ip``, Python binds to all addresses bind it."""
    out = dict(env)
    if pod_ip:
        out[_patch.POD_IP_ENV] = pod_ip
    path = out.get("PYTHONPATH")
    out["PYTHONPATH"] = os.pathsep.join([str(SITE), *([path] if path else [])])
    options = out.get("NODE_OPTIONS", "").strip()
    out["NODE_OPTIONS"] = f"{options} --require {PRELOAD}".strip()
    out[FILE_ENV] = str(dns_file)
    out[NAMESPACE_ENV] = namespace
    return out


def hosts_lines(dns_file: Path | str, namespace: str) -> list[str]:
    """``/etc/hosts`` lines (``<clusterIP> name.ns.svc.cluster.local name.ns.svc name.ns``)
    for the Services of ``namespace`` that have a ClusterIP, sorted by name."""
    lines = []
    for key, entry in sorted(DnsFile(dns_file).services().items()):
        space, _, name = key.partition("/")
        if space == namespace and entry.get("clusterIP"):
            names = (f"{name}.{space}.svc.cluster.local", f"{name}.{space}.svc", f"{name}.{space}")
            lines.append(f"{entry['clusterIP']} {' '.join(names)}")
    return lines

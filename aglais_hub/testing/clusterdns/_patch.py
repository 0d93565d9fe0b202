"""socket.getaddrinfo (and gethostbyname) consulting a DNS file first (ours); standard
library only, loaded by path from ``sitecustomize`` as well as imported by the package."""

from __future__ import annotations

import socket
from collections.abc import Callable

REAL_GETADDRINFO = socket.getaddrinfo
REAL_GETHOSTBYNAME = socket.gethostbyname
REAL_GETHOSTBYNAME_EX = socket.gethostbyname_ex


def _decoded(host: object) -> str | None:
    if isinstance(host, bytes):
        try:
            return host.decode("idna")
        except UnicodeError:
            return None
    return host if isinstance(host, str) else None


def make(find: Callable[[str], list[str] | None]) -> dict[str, Callable]:
    """Replacements for the socket functions; ``find(host)`` as ``resolver.lookup``."""

    def not_found(host: str) -> socket.gaierror:
        return socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}")

    def cluster_addresses(host: str | None) -> list[str] | None:
        """The cluster's addresses of ``host``; None: not a cluster name (the real
        resolver's turn); a cluster name that does not exist raises, as NXDOMAIN does."""
        ips = find(host) if host else None
        if ips is not None and not ips:
            raise not_found(host)
        return ips

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: ANN001, ANN202, A002
        ips = cluster_addresses(_decoded(host))
        if ips is None:
            return REAL_GETADDRINFO(host, port, family, type, proto, flags)
        answers = []
        for ip in ips:  # numeric: the real function only fills in the tuples
            answers += REAL_GETADDRINFO(
                ip, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
        return answers

    def gethostbyname(host):  # noqa: ANN001, ANN202
        ips = cluster_addresses(host if isinstance(host, str) else None)
        return REAL_GETHOSTBYNAME(host) if ips is None else ips[0]

    def gethostbyname_ex(host):  # noqa: ANN001, ANN202
        ips = cluster_addresses(host if isinstance(host, str) else None)
        return REAL_GETHOSTBYNAME_EX(host) if ips is None else (host, [], list(ips))

    return {
        "getaddrinfo": getaddrinfo,
        "gethostbyname": gethostbyname,
        "gethostbyname_ex": gethostbyname_ex,
    }


def install(find: Callable[[str], list[str] | None]) -> dict[str, Callable]:
    """Patch the socket module; returns what was there before (for ``restore``)."""
    before = {
        name: getattr(socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex")
    }
    for name, function in make(find).items():
        setattr(socket, name, function)
    return before


def restore(before: dict[str, Callable]) -> None:
    for name, function in before.items():
        setattr(socket, name, function)


POD_IP_ENV = "AGLAIS_POD_IP"


def install_pod_address(pod_ip: str) -> None:
    """Pods have no network namespace here: a bind to all IPv4 addresses ("" or 0.0.0.0)
    binds the pod IP, which is what a pod's own 0.0.0.0 is reached at, and a passive
    lookup of no host (a server about to bind everything) answers that address only."""
    real_bind = socket.socket.bind
    lookup = socket.getaddrinfo

    def bind(self, address):  # noqa: ANN001, ANN202
        if (
            self.family == socket.AF_INET
            and isinstance(address, tuple)
            and address[0] in ("", "0.0.0.0")
        ):
            address = (pod_ip, *address[1:])
        return real_bind(self, address)

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: ANN001, ANN202, A002
        if host in (None, "") and flags & socket.AI_PASSIVE and family in (0, socket.AF_INET):
            host, family = pod_ip, socket.AF_INET
        return lookup(host, port, family, type, proto, flags)

    socket.socket.bind = bind
    socket.getaddrinfo = getaddrinfo

"""The testing cluster's service proxy: OURS, standing in for kube-proxy (and for the
endpoints half of the EndpointSlice controller, see below).

It list-watches Services and Pods cluster-wide and, for every Service of type ClusterIP,
NodePort or LoadBalancer that has a clusterIP (not headless), listens on
``clusterIP:port`` for each TCP port (each cluster's Service CIDR is loopback,
devcluster.service_cidr, so binding needs no privileges) and forwards each connection byte
for byte to one ready endpoint, round robin. Endpoints are looked up when a connection
arrives, so changes apply to new connections; with no ready endpoint a connection is reset
at once (as kube-proxy's REJECT refuses it); when the Service goes its listeners close.
The ``kubernetes`` Service (no endpoints here: the endpoint reconciler is off) forwards to
the API server itself.

Why Pods and not EndpointSlices: pods here have loopback IPs (127.N.x.y), which the API
server refuses in EndpointSlices as in Endpoints ("may not be in the loopback range"),
so the real EndpointSlice controller cannot publish them. The proxy therefore selects
the endpoints itself, as that controller would: pods of the Service's namespace whose
labels match its selector, with a pod IP, not terminating or finished, Ready (or any,
with ``publishNotReadyAddresses``); a named targetPort is resolved per pod from its
containers' ports. Services without a selector have no endpoints here.

It keeps the DNS file (aglais_hub.testing.clusterdns) current, rewritten atomically
(a temporary file, then rename) whenever a Service or its ready endpoints change:
``{"services": {"<ns>/<name>": {"clusterIP": ip | null, "ips": [ready endpoint IPs],
"ports": {"<name or number>": port}}}}``.

It authenticates as kube-proxy does by default, ``system:kube-proxy`` (the default
ClusterRoleBinding ``system:node-proxier`` lets it list and watch Services), plus
``rbac()``'s read access to Pods (that kube-proxy does not need).

Not done: UDP and SCTP, NodePorts and load balancer addresses, sessionAffinity,
externalIPs, internalTrafficPolicy, topology, ExternalName. Every testing cluster on a
machine has a Service range of its own (the last /16 of its address block), so two never
bind one ClusterIP; an address already bound is logged and retried.

``python -m aglais_hub.testing.serviceproxy --kubeconfig K --dns-file F`` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .nodeagent.client import ApiClient, list_and_watch, user_cluster_role
from .signalled import run_until_signalled

log = logging.getLogger(__name__)
USER = "system:kube-proxy"
PROXIED_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
RETRY_BIND = 2.0  # seconds between attempts at an address another process holds


def rbac(user: str = USER) -> list[tuple[str, dict]]:
    """(API path, object) pairs granting ``user`` read access to pods, which this proxy
    needs beyond kube-proxy's default role (see the module docstring)."""
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    return user_cluster_role("aglais:service-proxy", user, rules)


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _selects(selector: dict, pod: dict) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


def target_port(service_port: dict, pod: dict) -> int | None:
    """The pod's port for a Service port: a number as given, a name looked up in the
    pod's container ports (None when the pod has no such port)."""
    target = service_port.get("targetPort", service_port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == "TCP":
                return int(port["containerPort"])
    return None


def endpoints(
    service: dict, pods: list[dict], port: dict | None = None, ready_only: bool = True
) -> list[tuple[str, int | None]]:
    """(pod IP, target port) of the pods a Service selects, as the EndpointSlice controller
    picks them; ``port`` None: the port is left out (for the DNS file)."""
    spec = service["spec"]
    selector = spec.get("selector")
    if not selector:
        return []
    namespace = service["metadata"]["namespace"]
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if (
            pod["metadata"]["namespace"] != namespace
            or not status.get("podIP")
            or pod["metadata"].get("deletionTimestamp")
            or status.get("phase") in ("Succeeded", "Failed")
            or not _selects(selector, pod)
        ):
            continue
        if ready_only and not (spec.get("publishNotReadyAddresses") or _ready(pod)):
            continue
        number = target_port(port, pod) if port is not None else None
        if port is not None and number is None:
            continue
        found.append((status["podIP"], number))
    return sorted(found)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, so the client sees the connection refused at once, not an EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close, as TCP through kube-proxy's NAT would
    except (ConnectionError, OSError):
        writer.close()


@dataclass
class Listener:
    key: str  # the Service, "<ns>/<name>"
    port: dict  # its spec.ports entry
    server: asyncio.Server | None = None
    retry: asyncio.Task | None = None


class ServiceProxy:
    """Listeners on ClusterIPs that forward to the Services' ready pods; the DNS file."""

    def __init__(self, client: ApiClient, dns_file: Path, api_host: str, api_port: int):
        self.client = client
        self.dns_file = Path(dns_file)
        self.api = (api_host, api_port)
        self.services: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}  # by uid
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.turn: dict[tuple[str, int], int] = {}  # round robin
        self.listed = {"services": False, "pods": False}
        self._written: str | None = None
        self.connections: set[asyncio.Task] = set()

    async def run(self) -> None:
        await asyncio.gather(
            list_and_watch(
                self.client, "/api/v1/services", self.service_event, self.services_listed
            ),
            list_and_watch(self.client, "/api/v1/pods", self.pod_event, self.pods_listed),
        )

    # -- what the API says ---------------------------------------------------------------

    async def services_listed(self, items: list[dict]) -> None:
        self.services = {_key(s): s for s in items}
        self.listed["services"] = True
        await self.sync()

    async def pods_listed(self, items: list[dict]) -> None:
        self.pods = {p["metadata"]["uid"]: p for p in items}
        self.listed["pods"] = True
        await self.sync()

    async def service_event(self, kind: str, service: dict) -> None:
        if kind == "DELETED":
            self.services.pop(_key(service), None)
        else:
            self.services[_key(service)] = service
        await self.sync()

    async def pod_event(self, kind: str, pod: dict) -> None:
        if kind == "DELETED":
            self.pods.pop(pod["metadata"]["uid"], None)
        else:
            self.pods[pod["metadata"]["uid"]] = pod
        await self.sync()

    # -- listeners -----------------------------------------------------------------------

    def wanted(self) -> dict[tuple[str, int], tuple[str, dict]]:
        found = {}
        for key, service in self.services.items():
            spec = service["spec"]
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or spec.get("type", "ClusterIP") not in PROXIED_TYPES:
                continue
            for port in spec.get("ports") or []:
                if port.get("protocol", "TCP") == "TCP":
                    found[(ip, int(port["port"]))] = (key, port)
        return found

    async def sync(self) -> None:
        if not all(self.listed.values()):
            return
        wanted = self.wanted()
        for address in [a for a in self.listeners if a not in wanted]:
            await self._close(address)
        for address, (key, port) in wanted.items():
            listener = self.listeners.get(address)
            if listener is not None and listener.key == key:
                listener.port = port
                continue
            if listener is not None:
                await self._close(address)
            self.listeners[address] = Listener(key, port)
            await self._open(address)
        self.write_dns()

    async def _open(self, address: tuple[str, int]) -> None:
        listener = self.listeners.get(address)
        if listener is None:
            return
        try:
            listener.server = await asyncio.start_server(
                lambda r, w: self._accepted(address, r, w), *address, reuse_address=True
            )
            listener.retry = None
            log.info("service %s: listening on %s:%s", listener.key, *address)
        except OSError as error:  # another cluster's proxy may hold it
            log.warning(
                "service %s: cannot listen on %s:%s (%s); retrying", listener.key, *address, error
            )
            listener.retry = asyncio.ensure_future(self._retry(address, listener))

    async def _retry(self, address: tuple[str, int], listener: Listener) -> None:
        await asyncio.sleep(RETRY_BIND)
        if self.listeners.get(address) is listener:
            await self._open(address)

    async def _close(self, address: tuple[str, int]) -> None:
        listener = self.listeners.pop(address)
        if listener.retry is not None:
            listener.retry.cancel()
        if listener.server is not None:
            listener.server.close()
            log.info("service %s: closed %s:%s", listener.key, *address)

    def backends(self, address: tuple[str, int]) -> list[tuple[str, int]]:
        listener = self.listeners.get(address)
        if listener is None:
            return []
        service = self.services.get(listener.key)
        if service is None:
            return []
        if listener.key == "default/kubernetes":
            return [self.api]
        return endpoints(service, list(self.pods.values()), listener.port)

    def _accepted(
        self, address: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.ensure_future(self._forward(address, reader, writer))
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _forward(
        self, address: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        choices = self.backends(address)
        start = self.turn.get(address, 0)
        self.turn[address] = start + 1
        # from this connection's turn on; a backend that refuses gives way to the next
        first = start % len(choices) if choices else 0
        for backend in [*choices[first:], *choices[:first]]:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*backend), 5)
            except (OSError, TimeoutError):
                continue
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                up_writer.close()
                writer.close()
            return
        _reset(writer)

    # -- the DNS file --------------------------------------------------------------------

    def dns_entries(self) -> dict:
        pods = list(self.pods.values())
        entries = {}
        for key, service in sorted(self.services.items()):
            spec = service["spec"]
            ip = spec.get("clusterIP")
            ips = sorted({ip for ip, _ in endpoints(service, pods)})
            if key == "default/kubernetes":
                ips = [self.api[0]]
            ports = {}
            for port in spec.get("ports") or []:
                ports[str(port["port"])] = port["port"]
                if port.get("name"):
                    ports[port["name"]] = port["port"]
            entries[key] = {
                "clusterIP": ip if ip and ip != "None" else None,
                "ips": ips,
                "ports": ports,
            }
        return {"services": entries}

    def write_dns(self) -> None:
        text = json.dumps(self.dns_entries(), indent=1, sort_keys=True)
        if text == self._written:
            return
        self.dns_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".dns-", dir=self.dns_file.parent)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, self.dns_file)  # readers see the old file or the new one
        self._written = text

    async def stop(self) -> None:
        for address in list(self.listeners):
            await self._close(address)
        for task in list(self.connections):
            task.cancel()
        await self.client.close()


def _key(obj: dict) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aglais_hub.testing.serviceproxy",
        description="the testing cluster's kube-proxy",
    )
    parser.add_argument("--kubeconfig", required=True, help="a system:kube-proxy kubeconfig")
    parser.add_argument("--dns-file", required=True, type=Path, help="the DNS file to keep")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    client = ApiClient.from_kubeconfig(args.kubeconfig, "aglais-serviceproxy")
    server = urllib.parse.urlsplit(client.server)
    proxy = ServiceProxy(client, args.dns_file, server.hostname, server.port or 443)
    await run_until_signalled(proxy.run(), proxy.stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Node object and its Lease, as a kubelet keeps them (ours, a stand-in).

``register`` creates the Node (or takes over an existing one of the same name) with its
capacity, allocatable resources, addresses, nodeInfo and conditions; ``heartbeat`` renews
the Lease in ``kube-node-lease`` and refreshes the conditions. The kubelet API behind the
node serves container logs and exec (``kubeletapi``: no attach, port-forward or
metrics), and there is no real resource accounting: the node reports what it is told.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import platform
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

from .client import STRATEGIC, ApiClient, ApiError

log = logging.getLogger(__name__)
LEASE_SECONDS = 40
RENEW_SECONDS = 10
AGENT_VERSION = "v1.37.2-aglais-nodeagent"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class NodeSpec:
    name: str
    address: str  # the node's InternalIP (a loopback address of its own)
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    kubelet_port: int = 0  # where its kubelet API listens (0: none)
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # one per agent run

    def resources(self) -> dict:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": "100Gi",
        }

    def conditions(self, transition: dict[str, str]) -> list[dict]:
        beat = now()
        rows = (
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "the aglais node agent is posting ready status"),
        )
        return [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": transition.setdefault(kind, beat),
            }
            for kind, status, reason, message in rows
        ]

    def status(self, transition: dict[str, str]) -> dict:
        machine = platform.machine()
        return {
            "capacity": self.resources(),
            "allocatable": self.resources(),
            "conditions": self.conditions(transition),
            "addresses": [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            # exec reaches the agent as a WebSocket, not translated to SPDY (kubeletapi)
            **({"declaredFeatures": ["ExtendWebSocketsToKubelet"]} if self.kubelet_port else {}),
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
                "bootID": self.boot_id,
                "kernelVersion": platform.release(),
                "osImage": "aglais node agent (local processes)",
                "containerRuntimeVersion": "aglais-local://1",
                "kubeletVersion": AGENT_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            },
        }

    def manifest(self, transition: dict[str, str]) -> dict:
        arch = self.status(transition)["nodeInfo"]["architecture"]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                },
            },
            "spec": {},
            "status": self.status(transition),
        }


class NodeKeeper:
    """Registers the Node, then keeps its Lease and status fresh."""

    def __init__(self, client: ApiClient, spec: NodeSpec):
        self.client = client
        self.spec = spec
        self.transition: dict[str, str] = {}
        self.uid: str | None = None

    async def register(self) -> dict:
        path = "/api/v1/nodes"
        try:
            node = await self.client.post(path, self.spec.manifest(self.transition))
        except ApiError as error:
            if error.status != 409:
                raise
            node = await self.update_status()
        self.uid = node["metadata"]["uid"]
        await self.renew_lease()
        return node

    async def update_status(self) -> dict:
        return await self.client.patch(
            f"/api/v1/nodes/{self.spec.name}/status",
            {"status": self.spec.status(self.transition)},
            STRATEGIC,
        )

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.spec.name}"
        spec = {
            "holderIdentity": self.spec.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            await self.client.patch(path, {"spec": spec})
        except ApiError as error:
            if error.status != 404:
                raise
            owner = (
                [{"apiVersion": "v1", "kind": "Node", "name": self.spec.name, "uid": self.uid}]
                if self.uid
                else []
            )
            await self.client.post(
                path.rsplit("/", 1)[0],
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.spec.name, "ownerReferences": owner},
                    "spec": spec,
                },
            )

    async def heartbeat(self) -> None:
        """Every RENEW_SECONDS: the Lease, and the conditions' heartbeat (a kubelet posts
        status less often when leases are on; once a minute here)."""
        beats = 0
        last = time.monotonic()
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            beats += 1
            # a beat long overdue (the agent was frozen, or the API away): the Node may
            # have been marked NotReady meanwhile, so its status goes out at once
            late = time.monotonic() - last > 2 * RENEW_SECONDS
            try:
                await self.renew_lease()
                if late or beats % 6 == 0:
                    await self.update_status()
                last = time.monotonic()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("heartbeat failed: %s", error)

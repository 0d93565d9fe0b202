"""A faithful Kubernetes cluster for tests, whose pods run as local processes.

`FakeCluster` serves the Kubernetes API over HTTP on 127.0.0.1 so that the real,
unmodified clients talk to it: KubeSpawner through `kubernetes_asyncio`, the
official `kubernetes` client, and Spark's Kubernetes backend (fabric8, inside
pyspark's jars). A scheduler places pods on simulated nodes, and a kubelet runs
them: every pod gets its own loopback address (127.x.y.z) as podIP, and each
container whose image is mapped in the image registry runs as a local process
with the pod's env (downward API included), args and volumes mapped to
directories. Spark executor images run real executor JVMs from pyspark's jars.

What it models faithfully
    core/v1 (namespaces, nodes, pods with status and log, services, endpoints,
    configmaps, secrets, serviceaccounts, PVCs, PVs, resourcequotas, events),
    RBAC roles and bindings, networkpolicies, storageclasses; uid, creationTimestamp,
    generation and one monotonically increasing resourceVersion; generateName;
    create/get/list/replace/patch (merge, strategic merge for the usual list keys,
    JSON patch)/delete and delete-collection; label selectors (=, ==, !=, in, notin,
    exists, !exists) and field selectors (metadata.name/namespace, status.phase,
    spec.nodeName, involvedObject.*); list + watch from a resourceVersion, with
    BOOKMARK events and a 410 ERROR event for compacted versions, as chunked HTTP
    and over WebSocket; watches closed after timeoutSeconds; Status bodies for 400,
    404, 409 AlreadyExists/Conflict, 410, 422 Invalid (names, required fields),
    403 from ResourceQuota admission (pods: cpu, memory, count; PVCs: storage,
    count; "must specify" for untracked requests); garbage collection by
    ownerReferences (background, foreground, orphan), namespace deletion, dynamic
    PVC provisioning per StorageClass and grow-only resize, Endpoints, quota
    status, Events for scheduling, pulling, starting, killing, back-off.

Fault injection (`cluster.faults` and the methods below, and the command line)
    ``fail(verb, resource, status, count=1, retry_after=None)``: the next ``count``
    requests with that verb (get, list, watch, create, update, patch, delete,
    deletecollection, or "*") on that resource plural (or "*") get ``status``
    (500, 429 with Retry-After, 409, ...) with a Status body;
    ``faults.latency = seconds`` delays every request (or only ``latency_verbs``);
    ``drop_watches()`` closes every open watch, so clients must resume;
    ``fail_image(pattern, "pull")`` leaves matching pods Pending with ErrImagePull,
    ``fail_image(pattern, "crash")`` makes their containers exit 1 (CrashLoopBackOff);
    ``remove_node(name)`` kills a node's pods' processes and fails them (NodeLost).
    From the command line: ``aglais-hub fake-cluster --fail create:pods:500:2``.

What it does not model (no test may lean on these)
    authentication and authorization (RBAC objects are stored, never enforced),
    admission webhooks, CRDs and API aggregation, server-side apply, pagination
    (``limit`` is ignored: lists return everything), real network isolation
    (NetworkPolicies are stored, not enforced; every pod can reach every other
    loopback address), Service routing and cluster DNS (clusterIPs do not route,
    ``*.svc`` names do not resolve: connect to pod IPs), container images (nothing
    is pulled; mapped images run host commands, unmapped ones are inert),
    resource limits (cgroups: a process may use more memory or cpu than its
    limits), exec/attach/port-forward, liveness and startup probes (readiness
    httpGet/tcpSocket probes run, with periods capped at 2 s), faster restart
    back-off (0.5 s doubling to 8 s), PVC protection finalizers, and controllers
    for Deployments, StatefulSets, Jobs and ReplicaSets (those APIs are absent).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from decimal import Decimal
from pathlib import Path

import yaml
from aiohttp import web

from aglais_hub.quantity import parse

from .admission import quota_admission
from .controllers import STORAGECLASSES, Controllers, R, storage_admission
from .errors import ApiError
from .faults import Faults
from .images import ImageRegistry, default_registry
from .kubelet import ImageFault, Kubelet, Node
from .server import ApiServer
from .store import Store

__all__ = ["ApiError", "FakeCluster", "ImageRegistry", "Node"]
log = logging.getLogger(__name__)


class FakeCluster:
    """One testing cluster: API server, controllers, scheduler and kubelet."""

    def __init__(
        self,
        port: int = 0,
        nodes: int = 2,
        node_cpu: str = "4",
        node_memory: str = "8Gi",
        root: Path | None = None,
        registry: ImageRegistry | None = None,
        bookmark_interval: float = 5.0,
        history: int = 20000,
    ):
        self.port = port
        self.store = Store(history=history)
        self.faults = Faults()
        self.root = Path(root or tempfile.mkdtemp(prefix="fakecluster-"))
        self.registry = registry or default_registry()
        self.kubelet = Kubelet(self, self.registry, self.root)
        self.controllers = Controllers(self)
        self.bookmark_interval = bookmark_interval
        self.request_count = 0
        self._node_spec = (nodes, parse(node_cpu), parse(node_memory))
        self._runner: web.AppRunner | None = None
        self.api = ApiServer(self)
        self.store.admission += [quota_admission(self.store), storage_admission(self.store)]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    async def start(self) -> FakeCluster:
        self.controllers.start()
        self.kubelet.start()
        for ns in ("default", "kube-system", "kube-public"):
            self.store.create(R["namespaces"], "", {"metadata": {"name": ns}})
        self.store.create(
            STORAGECLASSES,
            "",
            {
                "metadata": {
                    "name": "standard",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "fake.aglais/hostpath",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": True,
            },
        )
        count, cpu, memory = self._node_spec
        for i in range(count):
            self.kubelet.add_node(Node(f"node-{i + 1}", Decimal(cpu), Decimal(memory)))
        self._runner = web.AppRunner(
            self.api.app(), access_log=None, handle_signals=False, shutdown_timeout=1
        )
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        await asyncio.sleep(0)  # let the controllers see the first objects
        return self

    async def stop(self) -> None:
        self.store.drop_all_watches()
        await self.kubelet.stop_all()
        await self.controllers.stop()
        if self._runner:
            await self._runner.cleanup()

    async def settle(self, seconds: float = 0.05) -> None:
        """Give the controllers a moment (their effects are eventual, as on a cluster)."""
        await asyncio.sleep(seconds)

    # -- fault injection -------------------------------------------------------------------

    def fail(
        self,
        verb: str,
        resource: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        namespace: str | None = None,
    ):
        return self.faults.fail(verb, resource, status, count, retry_after, namespace)

    def drop_watches(self) -> int:
        return self.store.drop_all_watches()

    def fail_image(self, pattern: str, mode: str = "pull") -> None:
        if mode not in ("pull", "crash"):
            raise ValueError("mode is 'pull' or 'crash'")
        self.kubelet.image_faults.append(ImageFault(pattern, mode))

    def remove_node(self, name: str) -> None:
        self.kubelet.remove_node(name)

    # -- clients ---------------------------------------------------------------------------

    def kubeconfig(self, namespace: str = "default") -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "aglais-fake", "cluster": {"server": self.url}}],
            "users": [{"name": "aglais-fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": "aglais-fake",
                    "context": {
                        "cluster": "aglais-fake",
                        "user": "aglais-fake",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "aglais-fake",
        }

    def write_kubeconfig(self, path: Path | str, namespace: str = "default") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace)))
        return path

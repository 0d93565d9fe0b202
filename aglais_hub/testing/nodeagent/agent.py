"""The node agent's main loop (ours, standing in for a kubelet).

It registers its Node, renews its Lease, and list-watches the pods bound to it
(``spec.nodeName=<node>``, the only pod list the Node authorizer grants a node); each
pod gets a ``PodWorker`` and its own loopback address, 127.<node>.x.y (the node itself is
127.<node>.0.1). Deletion is honoured as a kubelet does; a pod that vanished from the
API has its processes killed. At start it kills processes an earlier run of the same
node left behind (found by their mark) and starts the pods still bound to it again
(their restart counts go up). Stopping the agent (SIGTERM) kills every pod process and
writes nothing to the API, as when a machine goes down.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from . import kubeletapi, processes
from .client import ApiClient, ApiError, list_and_watch
from .events import EventRecorder
from .images import ImageRegistry, exec_command
from .node import NodeKeeper, NodeSpec
from .pods import ContainerRun, PodWorker

log = logging.getLogger(__name__)
TERMINAL = ("Succeeded", "Failed")


class AddressPool:
    """127.<prefix>.x.y for pods: never the node's own .0.1, none handed out twice, and
    a released address used again only once every other one has been."""

    def __init__(self, prefix: int):
        self.prefix = prefix
        self.next = 2
        self.in_use: set[str] = set()
        self.released: list[str] = []

    def _address(self, n: int) -> str:
        return f"127.{self.prefix}.{n // 256}.{n % 256}"

    def take(self, wanted: str | None = None) -> str:
        if wanted and wanted.startswith(f"127.{self.prefix}.") and wanted not in self.in_use:
            self.in_use.add(wanted)
            return wanted
        while self.next < 256 * 256 - 1:
            address = self._address(self.next)
            self.next += 1
            if address not in self.in_use and not address.endswith((".0", ".255")):
                self.in_use.add(address)
                return address
        address = self.released.pop(0)
        self.in_use.add(address)
        return address

    def give_back(self, address: str) -> None:
        if address in self.in_use:
            self.in_use.discard(address)
            self.released.append(address)


class NodeAgent:
    def __init__(
        self,
        client: ApiClient,
        spec: NodeSpec,
        root: Path,
        *,
        shared_dir: Path,
        api_host: str,
        api_port: int,
        registry: ImageRegistry,
        cluster_id: str,
        ip_prefix: int,
        dns_file: Path | None = None,
        client_ca: Path | None = None,
    ):
        self.client = client
        self.spec = spec
        self.root = Path(root)
        self.shared_dir = Path(shared_dir)
        self.api_host, self.api_port = api_host, api_port
        self.registry = registry
        self.cluster_id = cluster_id
        self.dns_file = dns_file  # the service proxy's; None: no cluster DNS for pods
        self.client_ca = client_ca  # signs the API server's kubelet client; None: no kubelet API
        self.kubelet_api: web.AppRunner | None = None
        self.addresses = AddressPool(ip_prefix)
        self.events = EventRecorder(client, spec.name)
        self.keeper = NodeKeeper(client, spec)
        self.workers: dict[str, PodWorker] = {}  # by pod uid
        self.deleting: set[str] = set()
        self.tasks: list[asyncio.Task] = []
        self.background: set[asyncio.Future] = set()  # held, or they may be collected
        self.ready = asyncio.Event()

    @property
    def mark_prefix(self) -> str:
        return processes.mark(self.cluster_id, self.spec.name, "")

    async def run(self) -> None:
        left = processes.kill_all(self.mark_prefix)
        if left:
            log.warning("killed %d processes an earlier agent left behind", len(left))
        if self.client_ca is not None:  # before registering: the Node names its port
            self.kubelet_api = await kubeletapi.serve(
                self.container_log, self.spec.address, self.client_ca, self.exec_in
            )
            self.spec.kubelet_port = kubeletapi.KUBELET_PORT
        await self.keeper.register()
        log.info("node %s registered at %s", self.spec.name, self.spec.address)
        self.tasks = [
            asyncio.ensure_future(self.keeper.heartbeat()),
            asyncio.ensure_future(
                list_and_watch(
                    self.client,
                    "/api/v1/pods",
                    self.pod_event,
                    self.pods_listed,
                    fieldSelector=f"spec.nodeName={self.spec.name}",
                )
            ),
        ]
        self.ready.set()
        await asyncio.gather(*self.tasks)

    def _later(self, work: object) -> None:
        """Run ``work`` (a coroutine) beside the watch, logging what it raises."""
        future = asyncio.ensure_future(work)
        self.background.add(future)

        def done(finished: asyncio.Future) -> None:
            self.background.discard(finished)
            if not finished.cancelled() and finished.exception():
                log.error("node agent task failed", exc_info=finished.exception())

        future.add_done_callback(done)

    async def stop(self) -> None:
        for task in [*self.tasks, *self.background]:
            task.cancel()
        await asyncio.gather(*(worker.kill() for worker in self.workers.values()))
        self.workers.clear()
        processes.kill_all(self.mark_prefix)
        if self.kubelet_api is not None:
            await self.kubelet_api.cleanup()
        await self.client.close()

    def _worker(self, namespace: str, pod: str) -> PodWorker | None:
        """The worker of the pod ``namespace/pod`` on this node, if any."""
        for worker in self.workers.values():
            if (worker.namespace, worker.name) == (namespace, pod):
                return worker
        return None

    def container_log(
        self, namespace: str, pod: str, container: str
    ) -> tuple[Path, Callable[[], bool], int] | None:
        """What the kubelet API serves for ``kubectl logs``: the container's log file,
        whether it still runs, how often it restarted (None: no such container here)."""
        worker = self._worker(namespace, pod)
        run = (
            None
            if worker is None
            else (worker.containers.get(container) or worker.init_containers.get(container))
        )
        if worker is None or run is None:
            return None

        def running(worker: PodWorker = worker, run: ContainerRun = run) -> bool:
            alive = run.process is not None and run.process.returncode is None
            return alive and self.workers.get(worker.uid) is worker

        return run.log_path, running, run.restarts

    async def exec_in(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> asyncio.subprocess.Process | None:
        """`kubectl exec`: ``command`` as a local process in a running container's
        environment (images.exec_command), killed with the pod (None: not running here)."""
        worker = self._worker(namespace, pod)
        run = None if worker is None or worker.stopping else worker.containers.get(container)
        if (
            run is None
            or run.context is None
            or run.process is None
            or run.process.returncode is not None
        ):
            return None
        local = exec_command(run.context, command, run.exec_env, run.exec_cwd)
        process = await asyncio.create_subprocess_exec(
            *local.argv,
            env=local.env,
            cwd=str(local.cwd or worker.directory),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        worker.pgids.add(process.pid)
        return process

    # -- pods ----------------------------------------------------------------------------

    async def pods_listed(self, pods: list[dict]) -> None:
        present = {pod["metadata"]["uid"] for pod in pods}
        for uid in [uid for uid in self.workers if uid not in present]:
            await self.forget(uid)
        for pod in pods:
            await self.pod_event("ADDED", pod)

    async def pod_event(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if kind == "DELETED":
            await self.forget(uid)
            return
        worker = self.workers.get(uid)
        if meta.get("deletionTimestamp"):
            if worker is None:
                self._later(self.finish_deletion(meta["namespace"], meta["name"], uid))
            elif not worker.stopping:
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
                log.info("pod %s/%s: stopping (grace %ss)", meta["namespace"], meta["name"], grace)
                self._later(worker.terminate(int(grace)))
            return
        if worker is not None:
            worker.pod["metadata"] = meta  # labels and annotations may change
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL:
            return
        address = self.addresses.take((pod.get("status") or {}).get("podIP"))
        worker = self.workers[uid] = PodWorker(self, pod, address)
        log.info("pod %s/%s: starting at %s", meta["namespace"], meta["name"], address)
        worker.start()

    async def forget(self, uid: str) -> None:
        self.deleting.discard(uid)
        worker = self.workers.pop(uid, None)
        if worker is not None:
            await worker.kill()
            self.addresses.give_back(worker.ip)
            log.info("pod %s/%s: gone", worker.namespace, worker.name)
            # its volumes go with it (tokens, secrets, emptyDirs); its logs stay for tests
            shutil.rmtree(worker.directory / "volumes", ignore_errors=True)

    async def finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        """DELETE with grace 0, on the condition that it is still the same pod."""
        if uid in self.deleting:
            return
        self.deleting.add(uid)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            await self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("deleting %s/%s: %s", namespace, name, error)
                self.deleting.discard(uid)
        except Exception as error:  # noqa: BLE001 - the next event tries again
            log.warning("deleting %s/%s: %r", namespace, name, error)
            self.deleting.discard(uid)

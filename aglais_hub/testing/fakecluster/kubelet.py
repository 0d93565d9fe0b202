"""Scheduler and kubelet: place pods on simulated nodes and run their containers.

Every scheduled pod gets its own loopback address (127.x.y.z) as podIP; a container
whose image the registry maps runs as a local process (in its own process group);
other containers are inert (Running, no process).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from aglais_hub.quantity import format_bytes, format_cpu, parse

from .controllers import R, record_event
from .errors import ApiError
from .images import ContainerContext, ImageRegistry, LocalCommand
from .store import Change, now

if TYPE_CHECKING:
    from . import FakeCluster

log = logging.getLogger(__name__)
RESTART_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
PROBE_PERIOD_CAP = 2.0


@dataclass
class Node:
    """A simulated node with allocatable resources."""

    name: str
    cpu: Decimal
    memory: Decimal
    pods: int = 110

    def manifest(self) -> dict:
        allocatable = {
            "cpu": format_cpu(self.cpu),
            "memory": format_bytes(self.memory),
            "pods": str(self.pods),
        }
        return {
            "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name}},
            "spec": {},
            "status": {
                "capacity": allocatable,
                "allocatable": allocatable,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastTransitionTime": now(),
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            },
        }


@dataclass
class ImageFault:
    """A pod whose image matches fails: "pull" (ErrImagePull) or "crash" (exits 1)."""

    pattern: str
    mode: str


def pod_requests(pod: dict) -> tuple[Decimal, Decimal]:
    cpu = memory = Decimal(0)
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        cpu += parse(req.get("cpu", 0))
        memory += parse(req.get("memory", 0))
    return cpu, memory


@dataclass
class ContainerRun:
    name: str
    image: str
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    ready: bool = False
    started: bool = False


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    ip: str
    directory: Path
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    task: asyncio.Task | None = None
    stopping: bool = False
    pgids: set[int] = field(default_factory=set)


class Kubelet:
    """Scheduler and kubelet for every simulated node."""

    def __init__(self, cluster: FakeCluster, registry: ImageRegistry, root: Path):
        self.cluster = cluster
        self.store = cluster.store
        self.registry = registry
        self.root = root
        self.nodes: dict[str, Node] = {}
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self.queue = self.store.subscribe()
        self.task: asyncio.Task | None = None
        self.image_faults: list[ImageFault] = []
        self.start_delay = 0.0
        self._next_ip = 0
        self._free_ips: list[str] = []
        self.all_pgids: set[int] = set()

    # -- nodes -----------------------------------------------------------------------------

    def add_node(self, node: Node) -> None:
        self.nodes[node.name] = node
        self.store.create(R["nodes"], "", node.manifest())
        self.schedule_pending()

    def remove_node(self, name: str) -> None:
        """The node disappears: its pods' processes die and the pods fail (NodeLost)."""
        self.nodes.pop(name, None)
        for pod in list(self.store.all_objects(R["pods"])):
            if (pod.get("spec") or {}).get("nodeName") != name:
                continue
            self._discard(pod["metadata"]["uid"])

            def lost(o: dict, node: str = name) -> None:
                o["status"].update(
                    phase="Failed",
                    reason="NodeLost",
                    message=f"Node {node} which was running pod "
                    f"{o['metadata']['name']} is unresponsive",
                )

            self.store.update_status(
                R["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"], lost
            )
        try:
            self.store.delete(R["nodes"], "", name)
        except ApiError:
            pass

    def _discard(self, uid: str) -> None:
        """Forget a pod at once: kill its processes, free its address."""
        run = self.runs.pop(uid, None)
        if run:
            run.stopping = True
            if run.task:
                run.task.cancel()
            self._kill_groups(run, signal.SIGKILL)
            self._release_ip(run.ip)

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while True:
            change = await self.queue.get()
            if change.resource.kind != "Pod":
                continue
            try:
                self.pod_changed(change)
            except Exception:
                log.exception("kubelet failed on %s", change.obj["metadata"].get("name"))

    def pod_changed(self, change: Change) -> None:
        pod = change.obj
        meta = pod["metadata"]
        uid = meta["uid"]
        if change.type == "DELETED":
            self._discard(uid)
            self.schedule_pending()
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if meta.get("deletionTimestamp"):
            run = self.runs.get(uid)
            if run and not run.stopping:
                run.stopping = True
                asyncio.ensure_future(
                    self.terminate(run, meta.get("deletionGracePeriodSeconds") or 0)
                )
            elif not run:
                self.store.finish_deletion(R["pods"], meta["namespace"], meta["name"])
            return
        if not node:
            self.schedule(pod)
        elif (
            node in self.nodes
            and uid not in self.runs
            and pod["status"].get("phase") in ("Pending", None)
        ):
            self.launch(pod)

    # -- scheduling ------------------------------------------------------------------------

    def _allocated(self, node: str) -> tuple[Decimal, Decimal, int]:
        cpu = memory = Decimal(0)
        count = 0
        for pod in self.store.all_objects(R["pods"]):
            if (pod.get("spec") or {}).get("nodeName") == node and pod["status"].get(
                "phase"
            ) not in ("Succeeded", "Failed"):
                c, m = pod_requests(pod)
                cpu, memory, count = cpu + c, memory + m, count + 1
        return cpu, memory, count

    def schedule(self, pod: dict) -> None:
        cpu, memory = pod_requests(pod)
        reasons: dict[str, int] = {}
        for node in sorted(self.nodes.values(), key=lambda n: self._allocated(n.name)[2]):
            used_cpu, used_mem, used_pods = self._allocated(node.name)
            if used_cpu + cpu > node.cpu:
                reasons["Insufficient cpu"] = reasons.get("Insufficient cpu", 0) + 1
            elif used_mem + memory > node.memory:
                reasons["Insufficient memory"] = reasons.get("Insufficient memory", 0) + 1
            elif used_pods + 1 > node.pods:
                reasons["Too many pods"] = reasons.get("Too many pods", 0) + 1
            else:
                self.bind(pod, node.name)
                return
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no nodes available"
        message = f"0/{len(self.nodes)} nodes are available: {why}."
        meta = pod["metadata"]
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("message") == message for c in conditions):
            return

        def unschedulable(o: dict) -> None:
            o["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": now(),
                    "lastProbeTime": None,
                }
            ]

        self.store.update_status(R["pods"], meta["namespace"], meta["name"], unschedulable)
        record_event(self.store, pod, "FailedScheduling", message, "Warning", "default-scheduler")

    def schedule_pending(self) -> None:
        for pod in list(self.store.all_objects(R["pods"])):
            if not (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                self.schedule(copy.deepcopy(pod))

    def bind(self, pod: dict, node: str) -> None:
        meta = pod["metadata"]

        def bound(o: dict) -> None:
            o["spec"]["nodeName"] = node
            o["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": now(),
                    "lastProbeTime": None,
                }
            ]

        self.store.update_status(R["pods"], meta["namespace"], meta["name"], bound)
        record_event(
            self.store,
            pod,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            component="default-scheduler",
        )

    # -- addresses and volumes -------------------------------------------------------------

    def _allocate_ip(self) -> str:
        if self._free_ips:
            return self._free_ips.pop(0)
        self._next_ip += 1
        n = self._next_ip
        return f"127.{1 + n // 65024}.{(n // 254) % 256}.{1 + n % 254}"

    def _release_ip(self, ip: str) -> None:
        if ip not in self._free_ips:
            self._free_ips.append(ip)

    def volume_dir(self, volume: str) -> Path:
        path = self.root / "volumes" / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def forget_volume(self, volume: str) -> None:
        shutil.rmtree(self.root / "volumes" / volume, ignore_errors=True)

    def _prepare_volumes(self, pod: dict, run: PodRun) -> dict[str, Path] | str:
        """Volume name → host directory, or a FailedMount message while one is missing."""
        ns = pod["metadata"]["namespace"]
        dirs: dict[str, Path] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim_name = volume["persistentVolumeClaim"]["claimName"]
                try:
                    claim = self.store.get(R["persistentvolumeclaims"], ns, claim_name)
                except ApiError:
                    return f'persistentvolumeclaim "{claim_name}" not found'
                if (claim.get("status") or {}).get("phase") != "Bound":
                    return f'persistentvolumeclaim "{claim_name}" is not bound'
                dirs[name] = self.volume_dir(claim["spec"]["volumeName"])
            elif "configMap" in volume or "secret" in volume:
                is_cm = "configMap" in volume
                source = volume["configMap" if is_cm else "secret"]
                ref = source.get("name") if is_cm else source.get("secretName")
                try:
                    obj = self.store.get(R["configmaps" if is_cm else "secrets"], ns, ref)
                except ApiError:
                    if source.get("optional"):
                        obj = {"data": {}}
                    else:
                        kind = "configmap" if is_cm else "secret"
                        return f'{kind} "{ref}" not found'
                data = dict(obj.get("data") or {})
                if not is_cm:
                    data = {
                        k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()
                    }
                    data.update(obj.get("stringData") or {})
                target = run.directory / "volumes" / name
                target.mkdir(parents=True, exist_ok=True)
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        path = target / item["path"]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(data[item["key"]])
                dirs[name] = target
            elif "csi" in volume:
                handle = (volume["csi"].get("volumeAttributes") or {}).get("share") or name
                dirs[name] = self.volume_dir(f"csi-{volume['csi'].get('driver', 'csi')}-{handle}")
            else:  # emptyDir, hostPath (never the real host path), projected, downwardAPI
                dirs[name] = run.directory / "volumes" / name
                dirs[name].mkdir(parents=True, exist_ok=True)
        return dirs

    # -- environment -----------------------------------------------------------------------

    def _field(self, pod: dict, path: str, ip: str) -> str:
        meta = pod["metadata"]
        if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
            which, key = path.split("['", 1)
            return (meta.get(which.split(".")[1]) or {}).get(key.rstrip("']"), "")
        return {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "status.podIP": ip,
            "status.hostIP": "127.0.0.1",
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        }.get(path, "")

    def _env(self, pod: dict, container: dict, ip: str) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        # as a real kubelet does, point every container at the API server
        env: dict[str, str] = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.cluster.port),
        }
        for source in container.get("envFrom") or []:
            for kind, key in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if kind in source:
                    try:
                        obj = self.store.get(R[key], ns, source[kind]["name"])
                    except ApiError:
                        continue
                    for k, v in (obj.get("data") or {}).items():
                        env[source.get("prefix", "") + k] = (
                            base64.b64decode(v).decode() if key == "secrets" else v
                        )
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
            elif "valueFrom" in var:
                vf = var["valueFrom"]
                if "fieldRef" in vf:
                    env[var["name"]] = self._field(pod, vf["fieldRef"]["fieldPath"], ip)
                elif "resourceFieldRef" in vf:
                    section, name = vf["resourceFieldRef"]["resource"].split(".")
                    value = ((container.get("resources") or {}).get(section) or {}).get(name, "0")
                    env[var["name"]] = str(
                        int(parse(value) if name != "cpu" else -(-parse(value) // 1))
                    )
                else:
                    for kind, key in (
                        ("configMapKeyRef", "configmaps"),
                        ("secretKeyRef", "secrets"),
                    ):
                        if kind in vf:
                            try:
                                obj = self.store.get(R[key], ns, vf[kind]["name"])
                                raw = (obj.get("data") or {})[vf[kind]["key"]]
                                env[var["name"]] = (
                                    base64.b64decode(raw).decode() if key == "secrets" else raw
                                )
                            except (ApiError, KeyError):
                                pass
        # $(VAR) references to earlier variables
        for k, v in list(env.items()):
            for ref, value in env.items():
                v = v.replace(f"$({ref})", value)
            env[k] = v
        return env

    # -- running ---------------------------------------------------------------------------

    def launch(self, pod: dict) -> None:
        meta = pod["metadata"]
        directory = self.root / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        run = PodRun(meta["namespace"], meta["name"], meta["uid"], self._allocate_ip(), directory)
        for c in pod["spec"]["containers"]:
            run.containers[c["name"]] = ContainerRun(
                c["name"], c["image"], directory / f"{c['name']}.log"
            )
        self.runs[meta["uid"]] = run
        run.task = asyncio.ensure_future(self._run_pod(pod, run))

    def _image_fault(self, image: str) -> ImageFault | None:
        import fnmatch

        for fault in self.image_faults:
            if fnmatch.fnmatchcase(image, fault.pattern):
                return fault
        return None

    def _write_status(self, run: PodRun, phase: str | None = None) -> None:
        containers = []
        for c in run.containers.values():
            containers.append(
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": f"fake://{c.image}",
                    "containerID": f"fake://{run.uid[:8]}-{c.name}",
                    "ready": c.ready,
                    "started": c.started,
                    "restartCount": c.restarts,
                    "state": copy.deepcopy(c.state),
                }
            )
        all_ready = all(c.ready for c in run.containers.values())

        def update(o: dict) -> None:
            status = o.setdefault("status", {})
            status.update(
                podIP=run.ip,
                podIPs=[{"ip": run.ip}],
                hostIP="127.0.0.1",
                hostIPs=[{"ip": "127.0.0.1"}],
                containerStatuses=containers,
            )
            status.setdefault("startTime", now())
            status["qosClass"] = status.get("qosClass", "Burstable")
            if phase:
                status["phase"] = phase
            stamp = now()
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            for ctype, ok in (
                ("Initialized", True),
                ("ContainersReady", all_ready),
                ("Ready", all_ready),
            ):
                value = "True" if ok else "False"
                if conditions.get(ctype, {}).get("status") != value:
                    conditions[ctype] = {
                        "type": ctype,
                        "status": value,
                        "lastTransitionTime": stamp,
                        "lastProbeTime": None,
                    }
            status["conditions"] = list(conditions.values())

        self.store.update_status(R["pods"], run.namespace, run.name, update)

    def _pod_now(self, run: PodRun) -> dict | None:
        try:
            return self.store.get(R["pods"], run.namespace, run.name)
        except ApiError:
            return None

    async def _run_pod(self, pod: dict, run: PodRun) -> None:
        self._write_status(run, "Pending")
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        warned = False
        while True:
            volumes = self._prepare_volumes(pod, run)
            if not isinstance(volumes, str):
                break
            if not warned:
                record_event(
                    self.store,
                    pod,
                    "FailedMount",
                    f"MountVolume.SetUp failed: {volumes}",
                    "Warning",
                )
                warned = True
            await asyncio.sleep(0.5)
        for container in pod["spec"]["containers"]:
            c = run.containers[container["name"]]
            fault = self._image_fault(container["image"])
            if fault and fault.mode == "pull":
                message = f'Failed to pull image "{c.image}": rpc error: code = NotFound'
                record_event(self.store, pod, "Pulling", f'Pulling image "{c.image}"')
                record_event(self.store, pod, "Failed", message, "Warning")
                record_event(self.store, pod, "Failed", "Error: ErrImagePull", "Warning")
                c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
                self._write_status(run, "Pending")
                continue
            record_event(self.store, pod, "Pulling", f'Pulling image "{c.image}"')
            record_event(
                self.store,
                pod,
                "Pulled",
                f'Successfully pulled image "{c.image}" in 0s (0s including waiting)',
            )
        if any("ErrImagePull" in str(c.state) for c in run.containers.values()):
            return  # stays Pending, like a pod whose image cannot be pulled
        mounts_for = {
            container["name"]: {
                m["mountPath"]: volumes[m["name"]] / m.get("subPath", "")
                for m in container.get("volumeMounts") or []
            }
            for container in pod["spec"]["containers"]
        }
        await asyncio.gather(
            *(
                self._run_container(pod, run, container, mounts_for[container["name"]])
                for container in pod["spec"]["containers"]
            )
        )

    async def _run_container(
        self, pod: dict, run: PodRun, container: dict, mounts: dict[str, Path]
    ) -> None:
        c = run.containers[container["name"]]
        policy = pod["spec"].get("restartPolicy", "Always")
        builder = self.registry.builder_for(container["image"])
        while not run.stopping:
            env = self._env(pod, container, run.ip)
            ctx = ContainerContext(pod, container, run.ip, env, mounts, run.directory)
            record_event(self.store, pod, "Created", f"Created container {c.name}")
            try:
                if self._image_fault(container["image"]):
                    command: LocalCommand | None = LocalCommand(
                        ["/bin/sh", "-c", "echo crashing >&2; exit 1"],
                        {"PATH": os.environ.get("PATH", "")},
                        run.directory,
                    )
                else:
                    command = builder(ctx) if builder else None
            except (ValueError, KeyError) as error:
                c.state = {"waiting": {"reason": "CreateContainerError", "message": str(error)}}
                record_event(self.store, pod, "Failed", f"Error: {error}", "Warning")
                self._write_status(run)
                return
            if command is None:  # an unmapped image, or one its builder declares inert
                c.state = {"running": {"startedAt": now()}}
                c.started = True
                record_event(self.store, pod, "Started", f"Started container {c.name}")
                self._write_status(run, "Running")
                c.ready = await self._probe_until_ready(container, run)
                self._write_status(run, "Running")
                await asyncio.Event().wait()  # inert: runs until the pod stops
            try:
                log_file = c.log_path.open("ab")
                c.process = await asyncio.create_subprocess_exec(
                    *command.argv,
                    env=command.env,
                    cwd=str(command.cwd or run.directory),
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
                log_file.close()
            except (OSError, ValueError, KeyError) as error:
                c.state = {"waiting": {"reason": "CreateContainerError", "message": str(error)}}
                record_event(self.store, pod, "Failed", f"Error: {error}", "Warning")
                self._write_status(run)
                return
            run.pgids.add(c.process.pid)
            self.all_pgids.add(c.process.pid)
            c.state = {"running": {"startedAt": now()}}
            c.started = True
            c.ready = False
            record_event(self.store, pod, "Started", f"Started container {c.name}")
            self._write_status(run, "Running")
            probe = asyncio.ensure_future(self._probe_and_mark(container, run, c))
            code = await c.process.wait()
            probe.cancel()
            if run.stopping:
                return
            c.ready = False
            reason = "Completed" if code == 0 else "Error"
            c.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": c.state["running"]["startedAt"],
                    "finishedAt": now(),
                }
            }
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not restart:
                self._write_status(run, self._final_phase(run))
                return
            delay = RESTART_BACKOFF[min(c.restarts, len(RESTART_BACKOFF) - 1)]
            c.restarts += 1
            last = c.state["terminated"]
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay}s restarting failed container",
                }
            }
            self._write_status(run)
            record_event(
                self.store,
                pod,
                "BackOff",
                f"Back-off restarting failed container "
                f"{c.name} (last exit code {last['exitCode']})",
                "Warning",
            )
            await asyncio.sleep(delay)

    def _final_phase(self, run: PodRun) -> str | None:
        states = [c.state for c in run.containers.values()]
        if not all("terminated" in s for s in states):
            return None
        return "Succeeded" if all(s["terminated"]["exitCode"] == 0 for s in states) else "Failed"

    async def _probe_and_mark(self, container: dict, run: PodRun, c: ContainerRun) -> None:
        c.ready = await self._probe_until_ready(container, run)
        self._write_status(run)

    async def _probe_until_ready(self, container: dict, run: PodRun) -> bool:
        probe = container.get("readinessProbe")
        if not probe:
            return True
        await asyncio.sleep(min(probe.get("initialDelaySeconds", 0), PROBE_PERIOD_CAP))
        period = min(probe.get("periodSeconds", 10), PROBE_PERIOD_CAP)
        while not run.stopping:
            if await self._probe_once(probe, container, run):
                return True
            await asyncio.sleep(period)
        return False

    @staticmethod
    def _port(container: dict, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        return 0

    async def _probe_once(self, probe: dict, container: dict, run: PodRun) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                import aiohttp

                get = probe["httpGet"]
                url = f"http://{run.ip}:{self._port(container, get['port'])}{get.get('path', '/')}"
                async with aiohttp.ClientSession() as session:
                    async with session.get(
                        url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
                    ) as response:
                        return 200 <= response.status < 400
            if "tcpSocket" in probe:
                port = self._port(container, probe["tcpSocket"]["port"])
                _, writer = await asyncio.wait_for(asyncio.open_connection(run.ip, port), timeout)
                writer.close()
                return True
        except (TimeoutError, OSError, Exception):  # noqa: BLE001 - any failure is "not ready"
            return False
        return True  # exec probes are not run here

    def _kill_groups(self, run: PodRun, sig: int) -> None:
        for pgid in run.pgids:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    async def terminate(self, run: PodRun, grace: int) -> None:
        """SIGTERM every container's processes, SIGKILL after the grace period, then remove."""
        pod = self._pod_now(run)
        if pod:
            for c in run.containers.values():
                record_event(self.store, pod, "Killing", f"Stopping container {c.name}")
        self._kill_groups(run, signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0)
        processes = [c.process for c in run.containers.values() if c.process]
        while time.monotonic() < deadline and any(p.returncode is None for p in processes):
            await asyncio.sleep(0.1)
        self._kill_groups(run, signal.SIGKILL)
        for p in processes:
            if p.returncode is None:
                try:
                    await asyncio.wait_for(p.wait(), 5)
                except TimeoutError:
                    pass
        if run.task:
            run.task.cancel()
        for c in run.containers.values():
            code = c.process.returncode if c.process and c.process.returncode is not None else 137
            started = c.state.get("running", {}).get("startedAt")
            c.state = {
                "terminated": {
                    "exitCode": 143 if code in (-15, 143) else (137 if code < 0 else code),
                    "reason": "Error" if code else "Completed",
                    "startedAt": started,
                    "finishedAt": now(),
                }
            }
            c.ready = False
        # a deleted pod ends in a terminal phase before it goes (clients such as Spark
        # read the phase, not the event type)
        self._write_status(run, self._final_phase(run))
        self.store.finish_deletion(R["pods"], run.namespace, run.name)

    async def stop_all(self) -> None:
        """Kill every pod's processes (the cluster is going away)."""
        if self.task:
            self.task.cancel()
        for run in list(self.runs.values()):
            run.stopping = True
            if run.task:
                run.task.cancel()
            self._kill_groups(run, signal.SIGKILL)
            for c in run.containers.values():
                if c.process and c.process.returncode is None:
                    try:
                        await asyncio.wait_for(c.process.wait(), 5)
                    except TimeoutError:
                        pass
        self.runs.clear()

    def live_processes(self) -> list[int]:
        """PIDs of any process still in a process group a pod started."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in self.all_pgids:
                alive.append(int(entry.name))
        return alive

    def read_log(self, namespace: str, name: str, container: str | None) -> str:
        for run in self.runs.values():
            if (run.namespace, run.name) == (namespace, name):
                c = (
                    run.containers.get(container)
                    if container
                    else next(iter(run.containers.values()))
                )
                if c is None:
                    raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
                return c.log_path.read_text(errors="replace") if c.log_path.exists() else ""
        raise ApiError.not_found("pods", name)

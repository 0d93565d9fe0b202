"""One pod on the node agent, from bound to gone (ours, in place of a kubelet's pod
workers and container runtime).

Volumes first (FailedMount, retried, while one cannot be set up), then the init
containers one by one, then every container at once: each mapped image as a local
process (the node agent's image registry, ``images``, decides the command), each in its
own process group, with its output in ``<pod dir>/<container>.log``; an unmapped image
is an inert container (Running, no process; an unmapped init container completes).
Restarts follow ``restartPolicy`` with a growing back-off; readiness probes mark
containers ready; every change goes to ``pods/status`` as a strategic-merge patch
carrying the pod's uid (so a new pod of the same name is never written by mistake).
Deletion: SIGTERM, the grace period, SIGKILL, the terminal status, then DELETE with
grace 0.

Not done: liveness/startup probes, lifecycle hooks (postStart, preStop), sidecar init
containers (restartPolicy Always), resource limits (nothing is enforced), image pulls
(an image is present, or a test image that cannot be pulled: ErrImagePull, then
ImagePullBackOff), ``kubectl logs``/``exec`` (no kubelet API), ephemeral containers, pod resize.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from .. import clusterdns
from . import processes
from .client import STRATEGIC, ApiError, quote
from .env import ConfigError, PodPlace, container_env
from .images import ContainerContext, LocalCommand
from .node import now
from .objects import PodObjects
from .probes import readiness
from .volumes import MountError, PodVolumes

if TYPE_CHECKING:
    from .agent import NodeAgent

log = logging.getLogger(__name__)
UNHEALTHY_EVERY = 5.0  # seconds between Unhealthy events of one container (a kubelet counts)
# a kubelet backs off 10 s doubling to 5 min; tests cannot wait that long
RESTART_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
IMAGE_PULL_BACKOFF = (1.0, 2.0, 4.0, 8.0)  # the same for pulls (a kubelet: 10 s to 5 min)
NEXT_SYNC = 0.5  # seconds from a failed pull to its back-off, as a kubelet's next pod sync


@dataclass
class ContainerRun:
    name: str
    image: str
    log_path: Path
    init: bool = False
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""
    # what `kubectl exec` runs in: the container's context and its process's env and cwd
    context: ContainerContext | None = None
    exec_env: dict[str, str] = field(default_factory=dict)
    exec_cwd: Path | None = None

    @property
    def field_path(self) -> str:
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def status(self) -> dict:
        entry = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": copy.deepcopy(self.state),
            "lastState": copy.deepcopy(self.last_state),
        }
        if self.container_id:
            entry["containerID"] = self.container_id
            entry["imageID"] = f"aglais-local://{self.image}"
        return entry


def exit_code(returncode: int) -> int:
    """A signal death as a container runtime reports it (SIGTERM 143, SIGKILL 137)."""
    return 128 - returncode if returncode < 0 else returncode


class PodWorker:
    def __init__(self, agent: NodeAgent, pod: dict, ip: str):
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.ip = ip
        self.directory = agent.root / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.place = PodPlace(
            ip, agent.spec.address, agent.api_host, agent.api_port, agent.spec.resources()
        )
        self.objects = PodObjects(agent.client, self.namespace)
        self.volumes = PodVolumes(self.objects, pod, self.directory, self.place, agent.shared_dir)
        previous = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
        previous.update(
            {c["name"]: c for c in (pod.get("status") or {}).get("initContainerStatuses") or []}
        )
        self.containers: dict[str, ContainerRun] = {}
        self.init_containers: dict[str, ContainerRun] = {}
        for init, group, specs in (
            (True, self.init_containers, "initContainers"),
            (False, self.containers, "containers"),
        ):
            for spec in pod["spec"].get(specs) or []:
                run = ContainerRun(
                    spec["name"], spec["image"], self.directory / f"{spec['name']}.log", init
                )
                earlier = previous.get(spec["name"])
                if earlier and earlier.get("containerID"):  # run by an earlier agent
                    run.restarts = earlier.get("restartCount", 0) + 1
                group[spec["name"]] = run
        self.mark = processes.mark(agent.cluster_id, agent.spec.name, self.uid)
        self.pgids: set[int] = set()
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.sandbox_ready = False
        self.initialized = not self.init_containers
        self.terminal_phase: str | None = None
        self.start_time = (pod.get("status") or {}).get("startTime") or now()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.lock = asyncio.Lock()

    # -- status ------------------------------------------------------------------------

    def phase(self) -> str:
        if self.terminal_phase:
            return self.terminal_phase
        if not self.initialized:
            failed = any(
                "terminated" in c.state and c.state["terminated"]["exitCode"]
                for c in self.init_containers.values()
            )
            never = self.pod["spec"].get("restartPolicy", "Always") == "Never"
            return "Failed" if failed and never else "Pending"
        runs = list(self.containers.values())
        if any(not c.started and not c.restarts and "terminated" not in c.state for c in runs):
            return "Pending"
        if runs and all("terminated" in c.state for c in runs):
            codes = [c.state["terminated"]["exitCode"] for c in runs]
            return "Succeeded" if not any(codes) else "Failed"
        return "Running"

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
        value = "True" if ok else "False"
        if self.transitions.get(kind, ("",))[0] != value:
            self.transitions[kind] = (value, now())
        condition = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": self.transitions[kind][1],
        }
        if not ok and reason:
            condition.update(reason=reason, message=message)
        return condition

    def status(self) -> dict:
        phase = self.phase()
        unready = [c.name for c in self.containers.values() if not c.ready]
        done = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if done else "ContainersNotReady"
        message = "" if done else f"containers with unready status: [{' '.join(unready)}]"
        pending_init = [
            c.name
            for c in self.init_containers.values()
            if c.state.get("terminated", {}).get("exitCode", 1)
        ]
        status = {
            "phase": phase,
            "observedGeneration": self.pod["metadata"].get("generation", 1),
            "hostIP": self.place.host_ip,
            "hostIPs": [{"ip": self.place.host_ip}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.sandbox_ready),
                self._condition(
                    "Initialized",
                    self.initialized,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(pending_init)}]",
                ),
                self._condition("ContainersReady", not unready and not done, reason, message),
                self._condition("Ready", not unready and not done, reason, message),
            ],
            "containerStatuses": [c.status() for c in self.containers.values()],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers.values()]
        if self.sandbox_ready:
            status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
        return status

    async def write_status(self) -> None:
        async with self.lock:
            patch = {"metadata": {"uid": self.uid}, "status": self.status()}
            try:
                await self.agent.client.patch(
                    f"/api/v1/namespaces/{self.namespace}/pods/{quote(self.name)}/status",
                    patch,
                    STRATEGIC,
                )
            except ApiError as error:
                # 404: the pod is gone; a uid refused: a new pod has its name now
                if error.status != 404 and not (error.status == 422 and "uid" in str(error)):
                    log.warning("status of %s/%s not written: %s", self.namespace, self.name, error)
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("status of %s/%s not written: %r", self.namespace, self.name, error)

    async def event(
        self, reason: str, message: str, kind: str = "Normal", run: ContainerRun | None = None
    ) -> None:
        await self.agent.events.pod(
            self.pod, reason, message, kind, run.field_path if run else None
        )

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        renewing: asyncio.Future | None = None
        try:
            await self.write_status()
            directories = await self._mount()
            renewing = asyncio.ensure_future(self.volumes.renew_tokens())
            self.sandbox_ready = True
            await self.write_status()
            for spec in self.pod["spec"].get("initContainers") or []:
                run = self.init_containers[spec["name"]]
                code = await self._container(spec, run, self._mounts(spec, directories))
                if code != 0:
                    await self.write_status()
                    return
            self.initialized = True
            await self.write_status()
            await asyncio.gather(
                *(
                    self._container(
                        spec, self.containers[spec["name"]], self._mounts(spec, directories)
                    )
                    for spec in self.pod["spec"]["containers"]
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed in the node agent", self.namespace, self.name)
        finally:
            if renewing is not None:
                renewing.cancel()

    async def _mount(self) -> dict[str, Path]:
        reported = None
        while True:
            try:
                return await self.volumes.prepare()
            except MountError as error:
                if str(error) != reported:
                    await self.event("FailedMount", f"MountVolume.SetUp failed: {error}", "Warning")
                    reported = str(error)
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("volumes of %s/%s: %r", self.namespace, self.name, error)
            await asyncio.sleep(0.5)

    @staticmethod
    def _mounts(spec: dict, directories: dict[str, Path]) -> dict[str, Path]:
        mounts = {}
        for mount in spec.get("volumeMounts") or []:
            path = directories[mount["name"]] / mount.get("subPath", "")
            path.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = path
        return mounts

    async def _container(self, spec: dict, run: ContainerRun, mounts: dict[str, Path]) -> int:
        """Run one container until it ends for good (its last exit code), or until the pod
        stops. Init containers restart on failure unless restartPolicy is Never."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        builder = self.agent.registry.builder_for(spec["image"])
        if not await self._pull(spec, run):
            return 0
        while not self.stopping:
            try:
                links = self.pod["spec"].get("enableServiceLinks", True)
                services = await self.objects.services() if links else []
                env = await container_env(self.pod, spec, self.objects, self.place, services)
            except (ConfigError, ApiError) as error:
                run.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                }
                await self.event("Failed", f"Error: {error}", "Warning", run)
                await self.write_status()
                await asyncio.sleep(1)
                self.objects.forget()
                continue
            ctx = ContainerContext(self.pod, spec, self.ip, env, mounts, self.directory)
            try:
                command = builder(ctx) if builder else None
            except (ValueError, KeyError) as error:
                run.state = {"waiting": {"reason": "CreateContainerError", "message": str(error)}}
                await self.event("Failed", f"Error: {error}", "Warning", run)
                await self.write_status()
                return 1
            code = await self._once(spec, run, ctx, command)
            if self.stopping or code is None:
                return code or 0
            restart = (
                (policy != "Never" and code != 0)
                if run.init
                else (policy == "Always" or (policy == "OnFailure" and code != 0))
            )
            if not restart:
                await self.write_status()
                return code
            delay = RESTART_BACKOFF[min(run.restarts, len(RESTART_BACKOFF) - 1)]
            run.restarts += 1
            run.last_state = run.state
            run.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay}s restarting failed container={run.name} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                }
            }
            await self.write_status()
            message = (
                f"Back-off restarting failed container {run.name} in "
                f"pod {self.name}_{self.namespace}({self.uid})"
            )
            await self.event("BackOff", message, "Warning", run)
            await asyncio.sleep(delay)
        return 0

    async def _pull(self, spec: dict, run: ContainerRun) -> bool:
        """The image, as a kubelet ensures it before it creates a container: present at
        once (nothing is fetched), or, for an image the registry says cannot be pulled,
        ErrImagePull and ImagePullBackOff with their Events, again and again, until the
        pod stops (False)."""
        image = spec["image"]
        attempts = 0
        while not self.stopping:
            error = self.agent.registry.pull_error(image)
            if error is None:
                await self.event(
                    "Pulled", f'Container image "{image}" already present on machine', run=run
                )
                return True
            await self.event("Pulling", f'Pulling image "{image}"', run=run)
            failure = f'Failed to pull image "{image}": {error}'
            run.state = {"waiting": {"reason": "ErrImagePull", "message": failure}}
            await self.event("Failed", failure, "Warning", run)
            await self.event("Failed", "Error: ErrImagePull", "Warning", run)
            await self.write_status()
            await asyncio.sleep(NEXT_SYNC)
            run.state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}": ErrImagePull: {error}',
                }
            }
            await self.write_status()
            await self.event("BackOff", f'Back-off pulling image "{image}"', run=run)
            await self.event("Failed", "Error: ImagePullBackOff", "Warning", run)
            await asyncio.sleep(IMAGE_PULL_BACKOFF[min(attempts, len(IMAGE_PULL_BACKOFF) - 1)])
            attempts += 1
        return False

    async def _once(
        self, spec: dict, run: ContainerRun, ctx: ContainerContext, command: LocalCommand | None
    ) -> int | None:
        """One start of a container: its exit code (None: inert, ran until the pod stopped)."""
        run.container_id = f"aglais-local://{self.uid[:8]}-{run.name}-{run.restarts}"
        await self.event("Created", f"Created container: {run.name}", run=run)
        if command is None and run.init:  # an unmapped init container has nothing to do
            stamp = now()
            run.started = True
            run.state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": stamp,
                    "finishedAt": stamp,
                    "containerID": run.container_id,
                }
            }
            await self.event("Started", f"Started container {run.name}", run=run)
            return 0
        if command is None:
            run.state = {"running": {"startedAt": now()}}
            run.started = True
            await self.event("Started", f"Started container {run.name}", run=run)
            await self._probed(spec, run, ctx, asyncio.Event().wait())
            return None
        env = {**command.env, processes.MARK: self.mark}
        if self.agent.dns_file is not None:  # Service names resolve as in a pod
            env = clusterdns.process_env(env, self.agent.dns_file, self.namespace, self.ip)
        run.context, run.exec_env, run.exec_cwd = ctx, env, command.cwd or self.directory
        try:
            with run.log_path.open("ab") as output:
                run.process = await asyncio.create_subprocess_exec(
                    *command.argv,
                    env=env,
                    cwd=str(command.cwd or self.directory),
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
        except (OSError, ValueError) as error:
            run.state = {"waiting": {"reason": "RunContainerError", "message": str(error)}}
            await self.event("Failed", f"Error: {error}", "Warning", run)
            await self.write_status()
            return 128
        self.pgids.add(run.process.pid)
        if self.stopping:  # deleted while it started: it gets the same signal as the rest
            os.killpg(run.process.pid, signal.SIGTERM)
        started = now()
        run.state = {"running": {"startedAt": started}}
        run.started = True
        await self.event("Started", f"Started container {run.name}", run=run)
        code = exit_code(await self._probed(spec, run, ctx, run.process.wait()))
        run.ready = False
        run.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now(),
                "containerID": run.container_id,
            }
        }
        return code

    async def _probed(
        self, spec: dict, run: ContainerRun, ctx: ContainerContext, until: object
    ) -> object:
        """Await ``until`` (the process's end) while its readiness probe runs."""

        last_event = [0.0]

        async def report(ready: bool, message: str) -> None:
            if message and time.monotonic() - last_event[0] > UNHEALTHY_EVERY:
                last_event[0] = time.monotonic()
                await self.event("Unhealthy", f"Readiness probe failed: {message}", "Warning", run)
            if ready != run.ready or not message:
                run.ready = ready
                await self.write_status()

        probe = spec.get("readinessProbe") if not run.init else None
        probing = asyncio.ensure_future(readiness(probe, ctx, report))
        try:
            return await until
        finally:
            probing.cancel()

    # -- stopping ----------------------------------------------------------------------

    def _signal(self, sig: int) -> None:
        processes.signal_all(processes.find(self.mark, self.pgids), self.pgids, sig)

    async def _wait_processes(self, deadline: float) -> None:
        """Until every process of the pod has exited or the deadline has come: our own
        children are watched closely, /proc (for their descendants) less often."""
        while time.monotonic() < deadline:
            if any(r.process and r.process.returncode is None for r in self._runs()):
                await asyncio.sleep(0.05)
            elif processes.find(self.mark, self.pgids):
                await asyncio.sleep(0.25)
            else:
                return

    def _runs(self) -> list[ContainerRun]:
        return [*self.init_containers.values(), *self.containers.values()]

    async def terminate(self, grace: int) -> None:
        """SIGTERM, up to ``grace`` seconds, SIGKILL; the terminal status; DELETE grace 0."""
        self.stopping = True
        for run in self._runs():
            if "running" in run.state:
                await self.event("Killing", f"Stopping container {run.name}", run=run)
        self._signal(signal.SIGTERM)
        await self._wait_processes(time.monotonic() + max(grace, 0))
        await self.kill()
        for run in self._runs():
            if "running" in run.state:
                code = 137
                if run.process and run.process.returncode is not None:
                    code = exit_code(run.process.returncode)
                run.state = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": run.state["running"]["startedAt"],
                        "finishedAt": now(),
                        "containerID": run.container_id,
                    }
                }
            elif "terminated" not in run.state:  # never started, or waiting to restart
                run.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "finishedAt": now(),
                        "message": "The container could not be located when the pod was terminated",
                    }
                }
            run.ready = False
        codes = [
            r.state["terminated"]["exitCode"]
            for r in self.containers.values()
            if "terminated" in r.state
        ]
        self.terminal_phase = "Succeeded" if codes and not any(codes) else "Failed"
        await self.write_status()
        await self.agent.finish_deletion(self.namespace, self.name, self.uid)

    async def kill(self) -> None:
        """SIGKILL whatever is left and stop the worker (no API writes)."""
        self.stopping = True
        self._signal(signal.SIGKILL)
        if self.task and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it is going away
                pass
        self._signal(signal.SIGKILL)  # anything started while the task was cancelled
        for run in self._runs():
            if run.process and run.process.returncode is None:
                try:
                    await asyncio.wait_for(run.process.wait(), 5)
                except TimeoutError:
                    pass

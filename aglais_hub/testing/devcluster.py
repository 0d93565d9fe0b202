"""The testing cluster in one handle: the real control plane, our volume provisioner, our
service proxy and N node agents, each a process of its own.

``DevCluster(root, nodes=1)`` (a context manager) starts ControlPlane
(aglais_hub.testing.controlplane.cluster) under ``root`` (``root/admin.kubeconfig``, a
``system:masters`` client certificate; every process's output in ``root/logs``), binds the
provisioner's ClusterRole and starts it (``aglais_hub.testing.provisioner``, as user
``aglais:local-provisioner``), starts the node agents (``aglais_hub.testing.nodeagent``,
``node-1``… as ``system:node:node-N``, pods at 127.<B+N-1>.x.y (B the cluster's
``address_base``: 10 unless another DevCluster on this machine holds it), their directories under
``root/nodes``) and waits until every Node is Ready and schedulable and the default
StorageClass exists. It also starts the service proxy
(``aglais_hub.testing.serviceproxy``, our kube-proxy, as ``system:kube-proxy``): Services
get listeners on their ClusterIPs (loopback, ``service_cidr``: the last /16 of the
cluster's address block) that forward to their ready pods, and ``dns_file``
(``root/cluster-dns.json``) lists them, from which every pod process resolves Service
names (``aglais_hub.testing.clusterdns``: ``name``, ``name.ns``, ``name.ns.svc``,
``name.ns.svc.cluster.local``). Tests reach Services with ``service_url(ns, name, port)``
after ``wait_service(ns, name)``, or resolve names with
``clusterdns.resolving(dns_file)``. ``stop()`` ends the agents (which kill their pods'
processes), the provisioner, the service proxy and the control plane, and returns the pids
of pod processes that were still alive after the agents had gone (there should be none;
they are killed anyway).

Faults (for tests of how clients cope): ``fault_proxy=True`` (the default) also starts
our fault proxy (aglais_hub.testing.faultproxy) in front of the real API server:
``fault_proxy_server`` is its URL, ``faults`` the client of its rules, and
``through_faults(kubeconfig)`` a copy of a token kubeconfig that goes through it.
``restart_apiserver()`` and ``restart_etcd()`` stop and start the real processes on the
same ports, certificates and data; ``stop_agent(kill=True)``/``start_agent`` crash and
restart a node agent; ``node_not_ready(name)`` freezes an agent (SIGSTOP) so the real
node-lifecycle controller marks its Node's Ready condition Unknown once its Lease has
gone unrenewed for the grace period (``node_monitor_grace_period``, default 50s), and
``resume_node(name)`` lets it go on (SIGCONT).
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import yaml

from .clusterdns import DnsFile
from .controlplane.cluster import ControlPlane
from .faultproxy import FaultProxy
from .nodeagent import processes
from .nodeagent.client import ApiError, Credentials, request_sync
from .provisioner import STORAGE_CLASS
from .provisioner import USER as PROVISIONER_USER
from .provisioner import rbac as provisioner_rbac
from .serviceproxy import USER as SERVICE_PROXY_USER
from .serviceproxy import rbac as service_proxy_rbac

# the sample catalogue as the node agents serve it (share_sample_catalogue)
SAMPLE_CATALOGUE_DRIVER, SAMPLE_CATALOGUE_SHARE = "catalogues.testing.aglais.io", "gaia-sample"
SAMPLE_CATALOGUE_MOUNT = "/data/gaia"


class DevClusterError(RuntimeError):
    pass


# Node N of a cluster is 127.<base+N>.0.1 and its pods 127.<base+N>.x.y; its Services'
# ClusterIPs are 127.<base+ADDRESS_BLOCK-1>.x.y (service_cidr). Each running DevCluster on
# this machine holds one block of bases, so two clusters (a test run and a `dev-cluster`
# in another terminal) never give two pods or two Services one address and port.
ADDRESS_BLOCK = 16  # second octets per cluster: ADDRESS_BLOCK - 1 nodes at most, then Services
ADDRESS_BASES = range(10, 250 - ADDRESS_BLOCK, ADDRESS_BLOCK)


def claim_address_base(nodes: int) -> tuple[int, IO]:
    """The first address base no other DevCluster holds, and the open lock file that holds
    it (an exclusive flock, released when the file closes or the process ends)."""
    if nodes > ADDRESS_BLOCK - 1:
        raise DevClusterError(f"at most {ADDRESS_BLOCK - 1} nodes per cluster (asked for {nodes})")
    directory = Path(tempfile.gettempdir()) / "aglais-devcluster-addresses"
    directory.mkdir(exist_ok=True)
    for base in ADDRESS_BASES:
        handle = open(directory / f"{base}.lock", "w")  # noqa: SIM115 - held while it runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return base, handle
    raise DevClusterError("every block of pod addresses is held by another DevCluster")


def service_cidr(address_base: int) -> str:
    """The Service range of the cluster holding ``address_base``: the block's last /16."""
    return f"127.{address_base + ADDRESS_BLOCK - 1}.0.0/16"


def _child_env() -> dict[str, str]:
    dropped = ("KUBECONFIG",)
    return {
        k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_") and k not in dropped
    }


class DevCluster:
    def __init__(
        self,
        root: Path,
        nodes: int = 1,
        node_cpu: str = "8",
        node_memory: str = "32Gi",
        *,
        bin_dir: Path | None = None,
        images: tuple[str, ...] = (),
        startup_timeout: float = 120,
        fault_proxy: bool = True,
        node_monitor_grace_period: float | None = None,
    ):
        """``images``: extra ``PATTERN=MODULE:FUNCTION`` image mappings for the agents;
        ``bin_dir``: the control-plane binaries (default: the build's directory);
        ``fault_proxy``: start the fault proxy too; ``node_monitor_grace_period``:
        seconds before an unresponsive Node is marked not ready (kube-controller-manager's
        default, 50, when None)."""
        self.root = Path(root)
        self.node_names = [f"node-{i}" for i in range(1, nodes + 1)]
        self.node_cpu, self.node_memory = node_cpu, node_memory
        self.images = images
        self.startup_timeout = startup_timeout
        self.cluster_id = f"dev-{os.getpid()}-{secrets.token_hex(4)}"
        if bin_dir is None:
            from .controlplane import build

            bin_dir = build.find_binaries()
            if bin_dir is None:
                raise DevClusterError(f"no control-plane binaries: run `{build.BUILD_COMMAND}`")
        self.control_plane = ControlPlane(
            self.root, bin_dir, startup_timeout, node_monitor_grace_period=node_monitor_grace_period
        )
        self.agents: dict[str, subprocess.Popen] = {}
        self.address_base = ADDRESS_BASES[0]  # claimed at start
        self._address_lock: IO | None = None
        self.provisioner: subprocess.Popen | None = None
        self.service_proxy: subprocess.Popen | None = None
        self.want_fault_proxy = fault_proxy
        self.fault_proxy: subprocess.Popen | None = None
        self._fault_state: dict = {}
        self.paused: set[str] = set()  # node agents stopped by node_not_ready
        self._logs: list = []

    # -- what tests use --------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def server(self) -> str:
        return self.control_plane.server

    @property
    def ca_file(self) -> Path:
        return self.control_plane.ca_file

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    @property
    def dns_file(self) -> Path:
        """The service proxy's DNS file (aglais_hub.testing.clusterdns reads it)."""
        return self.root / "cluster-dns.json"

    @property
    def sample_catalogue_dir(self) -> Path:
        """Where the node agents keep the sample catalogue's csi share on this machine (a
        pod's processes see this directory where a container would see the mount)."""
        return self.root / "shared" / "csi" / SAMPLE_CATALOGUE_DRIVER / SAMPLE_CATALOGUE_SHARE

    def share_sample_catalogue(self) -> dict:
        """Put the machine's cached sample catalogue on the node agents' csi share
        (``root/shared/csi/<driver>/<share>``, aglais_hub.testing.nodeagent.volumes) and
        return the read-only data volume that mounts it at ``SAMPLE_CATALOGUE_MOUNT``, as
        an entry of ``spawner.kubernetes.dataVolumes`` (production mounts the real
        catalogues there)."""
        from .platform import cached_sample_catalogue

        shutil.copytree(cached_sample_catalogue(), self.sample_catalogue_dir, dirs_exist_ok=True)
        return {
            "name": "gaia",
            "mountPath": SAMPLE_CATALOGUE_MOUNT,
            "source": {
                "csi": {
                    "driver": SAMPLE_CATALOGUE_DRIVER,
                    "readOnly": True,
                    "volumeAttributes": {"share": SAMPLE_CATALOGUE_SHARE},
                }
            },
        }

    def _service(self, namespace: str, name: str) -> dict:
        return self._admin("GET", f"/api/v1/namespaces/{namespace}/services/{name}")

    def service_url(self, namespace: str, name: str, port: str | int, scheme: str = "http") -> str:
        """``scheme://<clusterIP>:<port>`` of a Service port (by name or number), which
        the service proxy forwards to the Service's ready pods."""
        spec = self._service(namespace, name)["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            raise DevClusterError(f"service {namespace}/{name} is headless: no ClusterIP")
        for entry in spec.get("ports") or []:
            if str(port) in (str(entry["port"]), entry.get("name")):
                return f"{scheme}://{ip}:{entry['port']}"
        raise DevClusterError(f"service {namespace}/{name} has no port {port!r}")

    def wait_service(self, namespace: str, name: str, timeout: float = 60) -> None:
        """Until the service proxy knows a ready endpoint of the Service and (unless it is
        headless) its first port's listener accepts connections."""
        deadline = time.monotonic() + timeout
        last: object = "not in the DNS file"
        dns = DnsFile(self.dns_file)
        while time.monotonic() < deadline:
            entry = dns.services().get(f"{namespace}/{name}")
            if entry and not entry["ips"]:
                last = "no ready endpoint"
            elif entry and not entry["clusterIP"]:
                return
            elif entry:
                port = next(iter(entry["ports"].values()), None)
                try:
                    with socket.create_connection((entry["clusterIP"], port), timeout=2):
                        return
                except OSError as error:
                    last = error
            time.sleep(0.1)
        raise DevClusterError(f"service {namespace}/{name} not reachable within {timeout}s: {last}")

    def client(self):  # noqa: ANN201 - kubernetes.client.ApiClient (a test dependency)
        """A client of the official ``kubernetes`` package, as the cluster's admin."""
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    # -- faults ----------------------------------------------------------------------------

    def _need_proxy(self) -> dict:
        if not self._fault_state:
            raise DevClusterError("no fault proxy: DevCluster(..., fault_proxy=True)")
        return self._fault_state

    @property
    def fault_proxy_server(self) -> str:
        """The fault proxy's URL (https, the cluster CA's certificate for 127.0.0.1)."""
        return self._need_proxy()["server"]

    @property
    def fault_proxy_control(self) -> str:
        """The URL of the fault proxy's control API (plain http on loopback)."""
        return self._need_proxy()["control"]

    @property
    def faults(self) -> FaultProxy:
        """The client of the fault proxy's rules."""
        return FaultProxy(self.fault_proxy_control)

    def through_faults(self, kubeconfig: Path | str, path: Path | str | None = None) -> Path:
        """A copy of a token kubeconfig (e.g. HubAccount's) whose clusters point at the
        fault proxy (and trust the cluster CA); at ``path``, else beside it as
        ``<name>.faults.kubeconfig``. A client certificate cannot pass the proxy (it ends
        at the proxy's TLS), so a kubeconfig with one is refused."""
        kubeconfig = Path(kubeconfig)
        config = yaml.safe_load(kubeconfig.read_text())
        for user in config.get("users") or []:
            fields = user.get("user") or {}
            if {"client-certificate", "client-certificate-data"} & set(fields):
                raise DevClusterError(
                    f"{kubeconfig}: user {user.get('name')} has a client "
                    "certificate, which the fault proxy cannot forward; "
                    "use a token (HubAccount)"
                )
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        for cluster in config.get("clusters") or []:
            cluster["cluster"].pop("certificate-authority", None)
            cluster["cluster"].update(
                {"server": self.fault_proxy_server, "certificate-authority-data": ca}
            )
        out = Path(path) if path else kubeconfig.with_name(f"{kubeconfig.stem}.faults.kubeconfig")
        out.touch(0o600)
        out.write_text(json.dumps(config, indent=2))
        return out

    def restart_apiserver(self, down: float = 0, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL), wait ``down`` seconds, start it again
        on the same port and certificates; return once its /readyz is 200."""
        self.control_plane.restart("kube-apiserver", down, kill)

    def restart_etcd(self, down: float = 0, kill: bool = False) -> None:
        """The same for etcd (its data kept); return once the API server is ready again."""
        self.control_plane.restart("etcd", down, kill)

    def node_not_ready(self, name: str) -> None:
        """Freeze node ``name``'s agent (SIGSTOP): its pods' processes run on, but nobody
        renews the Lease or writes status, as when a kubelet hangs or its machine is cut
        off. The node-lifecycle controller then marks the Node's Ready condition Unknown
        (after ``node_monitor_grace_period``) and taints it unreachable."""
        process = self.agents[name]
        process.send_signal(signal.SIGSTOP)
        self.paused.add(name)

    def resume_node(self, name: str) -> None:
        """Let a frozen agent go on (SIGCONT): it renews its Lease at once, and posts Ready
        at once (its first heartbeat after a gap posts status)."""
        process = self.agents.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
        self.paused.discard(name)

    def node_prefix(self, name: str) -> str:
        """The start of the addresses of node ``name`` and its pods ("127.10.")."""
        return f"127.{self.address_base + self.node_names.index(name)}."

    def read_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's output so far (in place of ``kubectl logs``; kept after the pod
        is gone). The newest pod of that name, on whichever node ran it."""
        found = sorted(
            self.root.glob(f"nodes/*/pods/{namespace}_{pod}_*/{container}.log"),
            key=lambda path: path.stat().st_mtime,
        )
        return found[-1].read_text(errors="replace") if found else ""

    def pod_processes(self) -> list[int]:
        """Live processes of any pod on any of this cluster's nodes."""
        return processes.find(f"{self.cluster_id}/")

    def children(self) -> dict[str, subprocess.Popen]:
        """Every process this cluster runs now (not the pods'), by name."""
        found = dict(self.control_plane.processes)
        found.update({f"nodeagent-{name}": process for name, process in self.agents.items()})
        if self.provisioner is not None:
            found["provisioner"] = self.provisioner
        if self.service_proxy is not None:
            found["service-proxy"] = self.service_proxy
        if self.fault_proxy is not None:
            found["fault-proxy"] = self.fault_proxy
        return found

    def ready_nodes(self) -> list[str]:
        """The Nodes that are Ready and schedulable now (asked of the API server)."""
        listed = self._admin("GET", "/api/v1/nodes")["items"]
        return sorted(n["metadata"]["name"] for n in listed if _schedulable(n))

    def describe(self) -> dict:
        """Where everything is (the dev-cluster command prints it and writes it as JSON)."""
        return {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "root": str(self.root),
            "logs": str(self.root / "logs"),
            "volumes": str(self.volumes_dir),
            "dns_file": str(self.dns_file),
            "cluster_id": self.cluster_id,
            "nodes": {n: self.node_prefix(n) + "0.1" for n in self.node_names},
            "ports": dict(self.control_plane.ports),
            "pids": {name: p.pid for name, p in self.children().items()},
            "fault_proxy": self._fault_state.get("server"),
            "fault_control": self._fault_state.get("control"),
        }

    # -- starting ------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{name}.log", "ab")  # closed by stop()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=_child_env(),
            start_new_session=True,
        )

    def _admin(self, method: str, path: str, body: object = None) -> dict:
        return request_sync(Credentials.from_kubeconfig(self.kubeconfig), method, path, body)

    def start(self) -> DevCluster:
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._address_lock is None:
            self.address_base, self._address_lock = claim_address_base(len(self.node_names))
        self.control_plane.service_cidr = service_cidr(self.address_base)
        self.control_plane.start()
        for path, obj in [*provisioner_rbac(), *service_proxy_rbac()]:
            try:
                self._admin("POST", path, obj)
            except ApiError as error:
                if error.status != 409:
                    raise
        config = self.control_plane.client_kubeconfig("provisioner", PROVISIONER_USER)
        self.provisioner = self._spawn(
            "provisioner",
            [
                "aglais_hub.testing.provisioner",
                "--kubeconfig",
                str(config),
                "--root",
                str(self.volumes_dir),
            ],
        )
        self.dns_file.unlink(missing_ok=True)  # written afresh once the proxy has listed
        config = self.control_plane.client_kubeconfig("service-proxy", SERVICE_PROXY_USER)
        self.service_proxy = self._spawn(
            "service-proxy",
            [
                "aglais_hub.testing.serviceproxy",
                "--kubeconfig",
                str(config),
                "--dns-file",
                str(self.dns_file),
            ],
        )
        if self.want_fault_proxy:
            self._start_fault_proxy()
        for index, name in enumerate(self.node_names):
            self.start_agent(name, index)
        if self.want_fault_proxy:
            self._wait_fault_proxy()
        self._wait_ready()

    def _start_fault_proxy(self) -> None:
        cert, key = self.control_plane.serving_cert("fault-proxy")
        state = self.root / "fault-proxy.json"
        state.unlink(missing_ok=True)
        self.fault_proxy = self._spawn(
            "fault-proxy",
            [
                "aglais_hub.testing.faultproxy",
                "--upstream",
                self.server,
                "--ca",
                str(self.ca_file),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--state-file",
                str(state),
            ],
        )

    def _wait_fault_proxy(self) -> None:
        """Until the proxy has written its ports (it binds free ones) and answers."""
        state = self.root / "fault-proxy.json"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.fault_proxy.poll() is not None:
                raise DevClusterError(
                    f"the fault proxy exited with {self.fault_proxy.returncode}"
                    f":\n{self._tail('fault-proxy')}"
                )
            if state.exists():
                self._fault_state = json.loads(state.read_text())
                self.faults.rules()  # the control API answers
                return
            time.sleep(0.05)
        raise DevClusterError(f"the fault proxy did not start within {self.startup_timeout}s")

    def start_agent(self, name: str, index: int | None = None) -> None:
        """Start (or start again) the agent of node ``name``."""
        index = self.node_names.index(name) if index is None else index
        config = self.control_plane.client_kubeconfig(
            name, f"system:node:{name}", ("system:nodes",)
        )
        args = [
            "aglais_hub.testing.nodeagent",
            "--kubeconfig",
            str(config),
            "--name",
            name,
            "--root",
            str(self.root / "nodes" / name),
            "--shared-dir",
            str(self.root / "shared"),
            "--ip-prefix",
            str(self.address_base + index),
            "--cluster-id",
            self.cluster_id,
            "--cpu",
            self.node_cpu,
            "--memory",
            self.node_memory,
            "--dns-file",
            str(self.dns_file),
            "--client-ca",
            str(self.ca_file),
        ]
        for image in self.images:
            args += ["--image", image]
        self.agents[name] = self._spawn(f"nodeagent-{name}", args)

    def _tail(self, name: str) -> str:
        try:
            text = (self.root / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-30:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: object = None
        while time.monotonic() < deadline:
            helpers = [("provisioner", self.provisioner), ("service-proxy", self.service_proxy)]
            for name, process in [*self.agents.items(), *helpers]:
                if process.poll() is not None:
                    log = f"nodeagent-{name}" if name in self.agents else name
                    raise DevClusterError(
                        f"{name} exited with {process.returncode}:\n{self._tail(log)}"
                    )
            try:
                listed = self._admin("GET", "/api/v1/nodes")["items"]
                nodes = {n["metadata"]["name"]: n for n in listed}
                self._admin("GET", f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
            except (ApiError, OSError) as error:
                last = error
                time.sleep(0.2)
                continue
            waiting = [name for name in self.node_names if not _schedulable(nodes.get(name))]
            if not self.dns_file.exists():
                waiting.append("service-proxy")
            if not waiting:
                return
            last = f"not ready: {', '.join(waiting)}"
            time.sleep(0.2)
        raise DevClusterError(f"the cluster was not ready within {self.startup_timeout}s: {last}")

    # -- stopping ------------------------------------------------------------------------

    def stop_agent(self, name: str, kill: bool = False, timeout: float = 15) -> None:
        """End one agent: SIGTERM (it kills its pods' processes first) or SIGKILL (they
        stay, as containers outlive a crashed kubelet, until an agent starts again)."""
        process = self.agents.pop(name, None)
        self.paused.discard(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.send_signal(signal.SIGCONT)  # a frozen agent handles SIGTERM only when let go
        _wait_or_kill(process, timeout)

    def stop(self, timeout: float = 15) -> list[int]:
        atexit.unregister(self.stop)
        for name in list(self.agents):
            self.stop_agent(name, timeout=timeout)
        left = self.pod_processes()
        processes.kill_all(f"{self.cluster_id}/")
        for helper in (self.provisioner, self.service_proxy, self.fault_proxy):
            if helper is not None and helper.poll() is None:
                helper.terminate()
                _wait_or_kill(helper, timeout)
        self.control_plane.stop(timeout)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._address_lock is not None:  # after the pods' processes are gone
            self._address_lock.close()
            self._address_lock = None
        return left

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Wait ``timeout`` seconds for a signalled process to end, then SIGKILL it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _schedulable(node: dict | None) -> bool:
    if node is None or node["spec"].get("unschedulable"):
        return False
    ready = any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions") or []
    )
    return ready and not any(
        t.get("effect") in ("NoSchedule", "NoExecute") for t in node["spec"].get("taints") or []
    )

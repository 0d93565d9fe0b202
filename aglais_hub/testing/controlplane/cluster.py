"""The real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, as the testing cluster runs them.

``ControlPlane(root, bin_dir)`` generates a CA and every certificate and key under
``root/pki``, starts the four processes on free 127.0.0.1 ports (each one's output in
``root/logs/<name>.log``), writes ``root/admin.kubeconfig`` (a client certificate in group
``system:masters``) and waits until the API server is ready and the controllers work.
RBAC, admission (ResourceQuota, PodSecurity, NodeRestriction on top of the defaults) and
the controllers are the real ones. Nothing runs pods yet: there is no kubelet, and the
``kubernetes`` Service has no endpoints (loopback addresses are not valid endpoints).

For fault tests, ``stop_component(name)``/``start_component(name)`` (and ``restart``)
end one of the four and start it again on the same port with the same certificates
and etcd data; ``serving_cert`` issues a serving certificate from the CA (the fault
proxy's); ``node_monitor_grace_period`` shortens how long the node-lifecycle controller
waits for an unresponsive Node.

The binaries come from ``build`` (``make cluster-bin``). The flag lists are pure
functions so they can be read, and tested, apart from the processes.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The default Service range (a DevCluster gives each cluster its own). Loopback: on Linux
# all of 127/8 is local, so our service proxy (aglais_hub.testing.serviceproxy) can bind
# any ClusterIP without privileges.
SERVICE_CIDR = "127.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KUBELET_CLIENT = "kube-apiserver-kubelet-client"  # kubeadm's name; the node agents check it
# Our additions to the API server's default admission plugins (which already include
# NamespaceLifecycle, LimitRanger, ServiceAccount, DefaultStorageClass, ResourceQuota,
# PodSecurity, StorageObjectInUseProtection and the webhooks): named so they stay on.
ADMISSION_PLUGINS = ("NodeRestriction", "ResourceQuota", "PodSecurity")
# kube-controller-manager's controllers by their canonical names (names/controller_names.go).
# node-lifecycle takes away the not-ready taint (TaintNodesByCondition admission puts it
# on every new Node) once the node agent reports Ready and renews its Lease.
# Not run: taint-eviction, node-ipam, the CSR signers,
# daemonset, hpa, bootstrap tokens, the in-tree volume expander and attach/detach.
CONTROLLERS = (
    "node-lifecycle-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "resourcequota-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "disruption-controller",
    "legacy-serviceaccount-token-cleaner-controller",
)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ADMIN_USER = "aglais-admin"


class ControlPlaneError(RuntimeError):
    pass


class _PortTaken(ControlPlaneError):
    pass


# --- certificates ----------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class CertificateAuthority:
    """A throwaway CA (ECDSA P-256, valid a year) that issues the cluster's certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "aglais-testing-ca") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        organizations: tuple[str, ...] = (),
        *,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[bytes, bytes]:
        """A leaf certificate and its key, both PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        names = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _write(path: Path, data: bytes, secret: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
    return path


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> dict:
    """A kubeconfig (as a dict; JSON is valid YAML) with everything embedded."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "aglais-testing",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "aglais-testing", "user": user}}],
        "current-context": user,
    }


# --- flags -----------------------------------------------------------------------------


def etcd_args(data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        "--name=aglais",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=aglais={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_args(
    pki: Path, etcd_url: str, port: int, service_cidr: str = SERVICE_CIDR
) -> list[str]:
    return [
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        # the front proxy (aggregated APIs), as kubeadm sets it up: its own CA, so no
        # client certificate of the cluster CA can pass for it; the controller-manager
        # and scheduler read this CA from extension-apiserver-authentication
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        f"--service-cluster-ip-range={service_cidr}",
        # kubectl logs: the node agents' kubelet API, at each Node's own loopback address
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        "--allow-privileged=true",
        # the `kubernetes` Service would point at 127.0.0.1, which Endpoints refuse
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def _component_serving(pki: Path, name: str, port: int, config: Path) -> list[str]:
    return [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / f'{name}.crt'}",
        f"--tls-private-key-file={pki / f'{name}.key'}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def controller_manager_args(
    pki: Path,
    port: int,
    config: Path,
    node_monitor_grace_period: float | None = None,
    service_cidr: str = SERVICE_CIDR,
) -> list[str]:
    """``node_monitor_grace_period``: seconds without a Lease renewal before the
    node-lifecycle controller marks a Node's Ready condition Unknown (default 50s); tests
    of an unresponsive node shorten it (the agent renews every 10s: keep it above ~20)."""
    args = _component_serving(pki, "kube-controller-manager", port, config) + [
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-cluster-ip-range={service_cidr}",
        f"--controllers={','.join(CONTROLLERS)}",
    ]
    if node_monitor_grace_period is not None:
        args += [
            f"--node-monitor-grace-period={node_monitor_grace_period:g}s",
            "--node-monitor-period=2s",
        ]
    return args


def scheduler_args(pki: Path, port: int, config: Path) -> list[str]:
    return _component_serving(pki, "kube-scheduler", port, config)


# --- processes -------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel reports free on 127.0.0.1 (held together while chosen).

    Another program may still take one before we bind it: ``start`` retries then."""
    sockets = []
    try:
        for _ in range(count):
            holder = socket.socket()
            holder.bind(("127.0.0.1", 0))
            sockets.append(holder)
        return [holder.getsockname()[1] for holder in sockets]
    finally:
        for holder in sockets:
            holder.close()


def _child_env() -> dict[str, str]:
    """Our environment without anything that would point a client elsewhere."""
    dropped = ("KUBECONFIG", "ETCDCTL_ENDPOINTS")
    return {
        k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_") and k not in dropped
    }


class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler under ``root``."""

    def __init__(
        self,
        root: Path,
        bin_dir: Path,
        startup_timeout: float = 120,
        *,
        node_monitor_grace_period: float | None = None,
        service_cidr: str = SERVICE_CIDR,
    ):
        self.root = Path(root)
        self.service_cidr = service_cidr
        self.node_monitor_grace_period = node_monitor_grace_period
        self.bin_dir = Path(bin_dir)
        self.startup_timeout = startup_timeout
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.kubeconfig = self.root / "admin.kubeconfig"
        self.processes: dict[str, subprocess.Popen] = {}
        self.started: list[subprocess.Popen] = []  # every process ever started, for checks
        self._log_files: list = []
        self.ports: dict[str, int] = {}
        self._ca: CertificateAuthority | None = None
        missing = [n for n in COMPONENTS if not os.access(self.bin_dir / n, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"{self.bin_dir} lacks {', '.join(missing)} (make cluster-bin)")

    # the API server's address and its CA, for clients
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes.values()]

    def client_kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig at ``root/<name>.kubeconfig`` for a client certificate ``user``
        in ``groups`` (e.g. ``system:node:n1`` in ``system:nodes`` for a node agent)."""
        if self._ca is None:
            raise ControlPlaneError("start() first")
        cert, key = self._ca.issue(user, groups, client=True)
        return self._write_kubeconfig(self.root / f"{name}.kubeconfig", cert, key, user)

    def serving_cert(
        self,
        name: str,
        dns: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1",),
    ) -> tuple[Path, Path]:
        """A serving certificate signed by the cluster CA (so clients that trust the API
        server trust it too), written to ``pki/<name>.crt`` and ``.key``; their paths."""
        if self._ca is None:
            raise ControlPlaneError("start() first")
        cert, key = self._ca.issue(name, dns=dns, ips=ips, server=True)
        return _write(self.pki / f"{name}.crt", cert), _write(self.pki / f"{name}.key", key, True)

    def _write_kubeconfig(self, path: Path, cert: bytes, key: bytes, user: str) -> Path:
        config = kubeconfig(self.server, self._ca.cert_pem, cert, key, user)
        return _write(path, json.dumps(config, indent=2).encode(), secret=True)

    def _write_pki(self) -> None:
        ca = self._ca = CertificateAuthority.create()
        _write(self.pki / "ca.crt", ca.cert_pem)
        service_ip = str(next(ipaddress.ip_network(self.service_cidr).hosts()))
        in_cluster = (
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
        serving = {
            "apiserver": (("localhost", *in_cluster), ("127.0.0.1", "::1", service_ip)),
            "kube-controller-manager": (("localhost",), ("127.0.0.1",)),
            "kube-scheduler": (("localhost",), ("127.0.0.1",)),
        }
        for name, (dns, ips) in serving.items():
            cert, key = ca.issue(name, dns=dns, ips=ips, server=True)
            _write(self.pki / f"{name}.crt", cert)
            _write(self.pki / f"{name}.key", key, secret=True)
        cert, key = ca.issue(KUBELET_CLIENT, client=True)  # the API server toward kubelets
        _write(self.pki / "apiserver-kubelet-client.crt", cert)
        _write(self.pki / "apiserver-kubelet-client.key", key, secret=True)
        front_proxy = CertificateAuthority.create("aglais-testing-front-proxy-ca")
        _write(self.pki / "front-proxy-ca.crt", front_proxy.cert_pem)
        cert, key = front_proxy.issue("front-proxy-client", client=True)
        _write(self.pki / "front-proxy-client.crt", cert)
        _write(self.pki / "front-proxy-client.key", key, secret=True)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        _write(self.pki / "sa.key", _pem_key(sa_key), secret=True)
        public = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(self.pki / "sa.pub", public)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # closed by stop()
        self._log_files.append(log)
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {name} {' '.join(args)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=_child_env(),
        )
        self.processes[name] = process
        self.started.append(process)
        return process

    def _log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _ssl(self, client: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client:
            context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return context

    def _wait(self, name: str, url: str, deadline: float, context: ssl.SSLContext | None) -> None:
        """Poll ``url`` until it answers 200; fail early when ``name`` has exited."""
        last = "no answer"
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                tail = self._log_tail(name)
                error = _PortTaken if "address already in use" in tail else ControlPlaneError
                raise error(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as answer:
                last = f"{answer.code} {answer.read()[:500]!r}"
            except OSError as error:
                last = str(error)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{name} not ready at {url} within {self.startup_timeout}s: {last}"
            f"\n{self._log_tail(name)}"
        )

    @property
    def _etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd-client']}"

    def _start_etcd(self, deadline: float) -> None:
        data = self.root / "etcd-data"
        self._spawn("etcd", etcd_args(data, self.ports["etcd-client"], self.ports["etcd-peer"]))
        self._wait("etcd", f"{self._etcd_url}/health", deadline, None)

    def _start_apiserver(self, deadline: float, restart: bool = False) -> None:
        self._spawn(
            "kube-apiserver",
            apiserver_args(
                self.pki, self._etcd_url, self.ports["kube-apiserver"], self.service_cidr
            ),
        )
        self._wait("kube-apiserver", f"{self.server}/readyz", deadline, self._ssl(client=True))
        if restart:
            # /readyz can pass before the RBAC authorizer has its roles again; until then
            # every user but system:masters is refused (the components back off up to
            # 30s after such refusals), so wait until RBAC grants the scheduler's read
            probe = ssl.create_default_context(cafile=str(self.ca_file))
            probe.load_cert_chain(self.pki / "rbac-probe.crt", self.pki / "rbac-probe.key")
            self._wait("kube-apiserver", f"{self.server}/api/v1/nodes?limit=1", deadline, probe)

    def _start_once(self) -> None:
        names = ("etcd-client", "etcd-peer", *COMPONENTS[1:])
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        deadline = time.monotonic() + self.startup_timeout
        shutil.rmtree(self.root / "etcd-data", ignore_errors=True)
        self._start_etcd(deadline)
        self._start_apiserver(deadline)
        admin = self._ssl(client=True)

        self._write_kubeconfig(
            self.kubeconfig,
            (self.pki / "admin.crt").read_bytes(),
            (self.pki / "admin.key").read_bytes(),
            ADMIN_USER,
        )
        kcm = self.client_kubeconfig("kube-controller-manager", "system:kube-controller-manager")
        scheduler = self.client_kubeconfig("kube-scheduler", "system:kube-scheduler")
        self._spawn(
            "kube-controller-manager",
            controller_manager_args(
                self.pki,
                self.ports["kube-controller-manager"],
                kcm,
                self.node_monitor_grace_period,
                self.service_cidr,
            ),
        )
        self._spawn(
            "kube-scheduler", scheduler_args(self.pki, self.ports["kube-scheduler"], scheduler)
        )
        serving = self._ssl(client=False)
        for name in ("kube-controller-manager", "kube-scheduler"):
            self._wait(name, f"https://127.0.0.1:{self.ports[name]}/healthz", deadline, serving)
        # the controllers have started once the serviceaccount controller has done its work
        sa = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        self._wait("kube-controller-manager", sa, deadline, admin)

    def start(self, attempts: int = 3) -> ControlPlane:
        """Start everything; when a chosen port was taken meanwhile, start again on others."""
        if self.processes:
            raise ControlPlaneError("already started")
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        admin_cert, admin_key = self._ca.issue(ADMIN_USER, ("system:masters",), client=True)
        _write(self.pki / "admin.crt", admin_cert)
        _write(self.pki / "admin.key", admin_key, secret=True)
        probe_cert, probe_key = self._ca.issue("system:kube-scheduler", client=True)
        _write(self.pki / "rbac-probe.crt", probe_cert)
        _write(self.pki / "rbac-probe.key", probe_key, secret=True)
        atexit.register(self.stop)
        for attempt in range(attempts):
            try:
                self._start_once()
                return self
            except _PortTaken:
                self.stop()
                if attempt == attempts - 1:
                    raise
                atexit.register(self.stop)
            except BaseException:
                self.stop()
                raise
        return self

    # -- faults: one component down and up again ---------------------------------------

    def stop_component(self, name: str, kill: bool = False, timeout: float = 15) -> None:
        """End one of COMPONENTS (SIGTERM, or SIGKILL with ``kill``); its ports, certificates
        and etcd's data stay, so ``start_component`` brings it back as it was."""
        if name not in COMPONENTS:
            raise ControlPlaneError(f"no component {name!r}: one of {', '.join(COMPONENTS)}")
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def start_component(self, name: str) -> None:
        """Start a stopped component again on the same port; wait until it is healthy (for
        etcd, and for the API server after etcd, until the API server's /readyz is 200)."""
        if name in self.processes and self.processes[name].poll() is None:
            raise ControlPlaneError(f"{name} is running")
        deadline = time.monotonic() + self.startup_timeout
        if name == "etcd":
            self._start_etcd(deadline)
        elif name == "kube-apiserver":
            self._start_apiserver(deadline, restart=True)
        elif name == "kube-controller-manager":
            self._spawn(
                name,
                controller_manager_args(
                    self.pki,
                    self.ports[name],
                    self.root / f"{name}.kubeconfig",
                    self.node_monitor_grace_period,
                    self.service_cidr,
                ),
            )
        else:
            self._spawn(
                name, scheduler_args(self.pki, self.ports[name], self.root / f"{name}.kubeconfig")
            )
        if name in ("kube-controller-manager", "kube-scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._wait(name, url, deadline, self._ssl(client=False))
        elif "kube-apiserver" in self.processes:
            self.wait_ready(deadline - time.monotonic())

    def restart(self, name: str, down: float = 0, kill: bool = False) -> None:
        """``stop_component``, ``down`` seconds with it gone, ``start_component``."""
        self.stop_component(name, kill)
        time.sleep(down)
        self.start_component(name)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Until the API server's /readyz answers 200 (its etcd check included)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        self._wait("kube-apiserver", f"{self.server}/readyz", deadline, self._ssl(client=True))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM each process (clients of the API server first, etcd last), SIGKILL any
        still there after ``timeout`` seconds, and wait for every one of them."""
        atexit.unregister(self.stop)
        for name in reversed(COMPONENTS):
            process = self.processes.get(name)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""`aglais-hub dev-cluster`: the testing cluster on the real control plane, in the
foreground (aglais_hub.testing.devcluster).

It finds the control-plane binaries or builds them (``make cluster-bin``'s build, its
progress on stderr), starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, our volume provisioner and N node agents under ``--root``, copies the
admin kubeconfig to ``--kubeconfig`` when given, waits until the API server is ready and
every Node is Ready, prints where everything is and a line saying it is ready, and
writes the same facts (pids and ports too) to ``ROOT/dev-cluster.json``. On Ctrl-C,
SIGTERM or SIGHUP it stops every process it started and exits 0; when one of them dies
by itself it stops the rest and exits 1.

``--install-chart`` then installs the Helm chart (chart/aglais) with the real ``helm``:
release "aglais" in namespace "aglais" (labelled for Pod Security ``restricted``), with
config/devcluster-chart-values.yaml and any ``-f VALUES`` after it (the development
identity provider with demo users; users reach the platform at the proxy's Service, as
no Ingress controller runs here). It waits until the release is ready and prints the
URL, the logins and the /etc/hosts lines a browser on this machine needs to resolve the
Service names (the node agents' processes resolve them by themselves).

``--fault-proxy`` also starts the fault proxy (aglais_hub.testing.faultproxy) in front of
the API server and prints its URL (for token kubeconfigs: a client certificate cannot
pass it), its control API's URL and a curl line that adds a rule.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .devcluster import DevCluster

STATE_FILE = "dev-cluster.json"
READY_LINE = "dev cluster ready"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(BaseException):
    """Raised by the signal handler: unwind, stopping whatever was started."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=2, help="node agents (default: 2)")
    parser.add_argument("--node-cpu", default="8", help="allocatable cpu per node (default: 8)")
    parser.add_argument(
        "--node-memory", default="32Gi", help="allocatable memory per node (default: 32Gi)"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="write the admin kubeconfig here too (default: ROOT/admin.kubeconfig only)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="certificates, etcd data, logs, pod and volume directories "
        "(default: a new one under the temp dir, kept afterwards)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120,
        metavar="SECONDS",
        help="how long starting may take (default: 120)",
    )
    parser.add_argument(
        "--install-chart",
        action="store_true",
        help="helm install chart/aglais into the cluster (release and "
        "namespace aglais) and print its URL and logins",
    )
    parser.add_argument(
        "-f",
        "--values",
        type=Path,
        action="append",
        default=[],
        help="with --install-chart: a values file over "
        "config/devcluster-chart-values.yaml (repeatable)",
    )
    parser.add_argument(
        "--fault-proxy",
        action="store_true",
        help="also start the fault proxy in front of the API server (for "
        "token clients; rules through its control API)",
    )


def _on_signal(signum: int, frame: object) -> None:
    for other in _SIGNALS:  # one is enough: stopping must not be interrupted
        signal.signal(other, signal.SIG_IGN)
    raise _Stop(signum)


def _say(text: str, out: object = sys.stdout) -> None:
    print(text, file=out, flush=True)


def run(args: argparse.Namespace) -> int:
    previous = {signum: signal.signal(signum, _on_signal) for signum in _SIGNALS}
    try:
        return _run(args)
    except _Stop:
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _readyz(cluster: DevCluster) -> None:
    pki = cluster.control_plane.pki
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    with urllib.request.urlopen(f"{cluster.server}/readyz", timeout=10, context=context) as answer:
        if answer.status != 200:
            raise OSError(f"/readyz answered {answer.status}")


def _run(args: argparse.Namespace) -> int:
    from .chartrelease import ChartError
    from .controlplane import build
    from .controlplane.cluster import ControlPlaneError
    from .devcluster import DevCluster, DevClusterError
    from .nodeagent.client import ApiError

    if args.nodes < 1:
        _say("dev-cluster: --nodes must be at least 1", sys.stderr)
        return 2
    try:
        bin_dir = build.find_binaries()
        if bin_dir is None:
            _say("dev-cluster: building the control-plane binaries (once; see below)", sys.stderr)
            bin_dir = build.build(sys.stderr)
    except build.BuildError as error:
        _say(f"dev-cluster: {error}", sys.stderr)
        return 1
    _say(f"dev-cluster: control-plane binaries in {bin_dir}", sys.stderr)

    root = args.root or Path(tempfile.mkdtemp(prefix="aglais-dev-cluster-"))
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    cluster = DevCluster(
        root,
        nodes=args.nodes,
        node_cpu=args.node_cpu,
        node_memory=args.node_memory,
        bin_dir=bin_dir,
        startup_timeout=args.startup_timeout,
        fault_proxy=args.fault_proxy,
    )
    _say(
        f"dev-cluster: starting the control plane, the volume provisioner and {args.nodes} "
        f"node agent(s) under {root} (logs in {root / 'logs'})",
        sys.stderr,
    )
    started = time.monotonic()
    try:
        cluster.start()  # stops what it started when it fails (or a signal comes)
    except (DevClusterError, ControlPlaneError, ApiError, OSError) as error:
        _say(
            f"dev-cluster: the cluster did not start: {error}\n(logs in {root / 'logs'})",
            sys.stderr,
        )
        return 1
    code = 0
    try:
        code = _serve(cluster, args, time.monotonic() - started)
    except _Stop:
        pass
    except (ApiError, OSError, ChartError) as error:
        _say(f"dev-cluster: {error}", sys.stderr)
        code = 1
    finally:
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        _say("dev-cluster: stopping every process it started", sys.stderr)
        left = cluster.stop()
        if left:
            _say(
                f"dev-cluster: pod processes outlived their agents and were killed: {left}",
                sys.stderr,
            )
        _say(f"dev-cluster: stopped (logs kept in {root / 'logs'})", sys.stderr)
    return code


def _faults_text(cluster: DevCluster) -> str:
    if cluster.fault_proxy is None:
        return ""
    control = cluster.fault_proxy_control
    rule = '{"verb": "list", "resource": "pods", "status": 500, "count": 2}'
    return (
        f"  fault proxy: {cluster.fault_proxy_server}   (token kubeconfigs only; "
        f"CA {cluster.ca_file})\n"
        f"  faults:      {control}/faults   (GET lists, DELETE clears)\n"
        f"  try:         curl -X POST {control}/faults -d '{rule}'\n"
    )


def _install_chart(cluster: DevCluster, values: list[Path]) -> None:
    from .chartrelease import DEV_VALUES, ChartRelease
    from .clusterdns import hosts_lines

    release = ChartRelease(cluster, [DEV_VALUES, *(v.expanduser().resolve() for v in values)])
    _say(
        f"dev-cluster: helm install {release.release} chart/aglais --namespace "
        f"{release.namespace} --wait (the hub's first start takes a minute)",
        sys.stderr,
    )
    release.install()
    logins = "\n".join(
        f"    {name:8} password {user['password']}" for name, user in release.logins.items()
    )
    _say(
        f"chart installed: release {release.release} in namespace {release.namespace}\n"
        f"  hub:         {release.url}\n"
        f"  logins (the development identity provider):\n{logins}\n"
        f"  a browser on this machine needs these names in /etc/hosts:\n"
        + "".join(f"    {line}\n" for line in hosts_lines(cluster.dns_file, release.namespace))
        + f"  helm:        helm --kubeconfig {cluster.kubeconfig} -n {release.namespace} status "
        f"{release.release}"
    )


def _serve(cluster: DevCluster, args: argparse.Namespace, took: float) -> int:
    kubeconfig = cluster.kubeconfig
    if args.kubeconfig:
        kubeconfig = args.kubeconfig.expanduser().resolve()
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.touch(mode=0o600)
        kubeconfig.chmod(0o600)
        kubeconfig.write_bytes(cluster.kubeconfig.read_bytes())
    _readyz(cluster)
    nodes = cluster.ready_nodes()
    version = cluster._admin("GET", "/version").get("gitVersion", "?")
    facts = {
        **cluster.describe(),
        "admin_kubeconfig": str(kubeconfig),
        "version": version,
        "pid": os.getpid(),
    }
    (cluster.root / STATE_FILE).write_text(json.dumps(facts, indent=2) + "\n")
    _say(
        f"Kubernetes {version} (etcd, kube-apiserver, kube-controller-manager, "
        f"kube-scheduler), the volume provisioner and {len(nodes)} node agent(s)\n"
        f"  API server:  {cluster.server}\n"
        f"  kubeconfig:  {kubeconfig}   (export KUBECONFIG={kubeconfig})\n"
        f"  nodes:       {', '.join(nodes)} (Ready)\n"
        f"  root:        {cluster.root}   (pods under nodes/, volumes under volumes/)\n"
        f"  logs:        {cluster.root / 'logs'}\n"
        f"  facts:       {cluster.root / STATE_FILE}\n"
        f"  try:         kubectl --kubeconfig {kubeconfig} get nodes\n"
        f"{_faults_text(cluster)}"
        f"{READY_LINE} in {took:.0f}s; Ctrl-C (or SIGTERM) stops it."
    )
    if args.install_chart:
        _install_chart(cluster, args.values)
    while True:
        time.sleep(1)
        for name, process in cluster.children().items():
            if process.poll() is not None:
                _say(
                    f"dev-cluster: {name} exited by itself with {process.returncode} "
                    f"(see {cluster.root / 'logs'}); stopping the rest",
                    sys.stderr,
                )
                return 1

"""Hub-side spawn time: ZeppelinSpawner against plain KubeSpawner, side by side, on the
real Kubernetes control plane.

Each hub gets a fresh DevCluster (aglais_hub.testing.devcluster: the real API server,
etcd, scheduler and controller manager, our node agents and volume provisioner) and
talks to it as the chart's hub ServiceAccount (aglais_hub.testing.hubaccount), never as
admin. N users start servers at once through a real JupyterHub. To measure the
spawners, not what runs in the pods, both pods' server containers are the same tiny
HTTP responder (the node agents run it as a local process); ZeppelinSpawner still
creates everything it creates in production (namespace, RBAC, quota, network policy,
claim, Spark ConfigMap, pod, driver Service), KubeSpawner creates a namespace, a claim
and a pod. A third hub runs ZeppelinSpawner with the reservation service's spawn gate
(one spawn-check before every start). Prints the cluster start-up time, p50/p95 of
API-request-to-ready per user for each, and the ratios against KubeSpawner; on a busy
2-core machine single rounds vary, so use several rounds (the order of the hubs rotates
from round to round). It also prints each hub's own part (from the spawn request to its
request to create the pod, from the hub's log) and the CPU each process used;
``--count-requests`` adds the hub's Kubernetes API requests per spawn, by verb and
resource; ``--zeppelin-from FILE`` runs another copy of spawners/zeppelin/spawner.py
(e.g. the one before a change) for a before/after comparison.

    .venv/bin/python bench/spawn.py [--users 50] [--rounds 3] [--count-requests]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
import yaml

from aglais_hub.config import apply_defaults
from aglais_hub.demo import wait_for_http
from aglais_hub.testing.devcluster import DevCluster
from aglais_hub.testing.hubaccount import HubAccount, HubRbac, hub_rbac
from aglais_hub.testing.hubprocess import HubProcess
from aglais_hub.testing.nodeagent.images import ContainerContext, LocalCommand
from aglais_hub.testing.platform import demo_values, free_port

RESPONDER = (
    "import http.server as h, os, sys\n"
    "class H(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Type', 'application/json');"
    " self.end_headers(); self.wfile.write(b'{}')\n"
    "    def log_message(self, *a): pass\n"
    "h.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)
# the node agents import this module to build the responder's command line
IMAGES = (f"bench/*={Path(__file__).stem}:responder",)


def responder(ctx: ContainerContext) -> LocalCommand | None:
    """The server container answers 200 on its port; other containers are inert."""
    ports = ctx.container.get("ports") or []
    if not ports:
        return None
    return LocalCommand(
        [sys.executable, "-c", RESPONDER, ctx.pod_ip, str(ports[0]["containerPort"])],
        ctx.host_env(),
        ctx.pod_dir,
    )


KUBESPAWNER_CONFIG = """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.enable_user_namespaces = True
c.KubeSpawner.user_namespace_template = "kube-{username}"
c.KubeSpawner.image = "bench/singleuser"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
"""
ZEPPELIN_CONFIG = """
import os
from aglais_hub.config import load_values
from aglais_hub.hubconfig import hub_config
c.merge(hub_config(load_values(os.environ["AGLAIS_VALUES"]), os.environ))
"""
# --zeppelin-from FILE: that version of spawners/zeppelin/spawner.py (e.g. the one before a
# change), loaded as a module of the package so its relative imports work
OTHER_SPAWNER_CONFIG = """
import importlib.util as _util
_spec = _util.spec_from_file_location("spawners.zeppelin.spawner_under_test", {path!r})
_module = _util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
c.JupyterHub.spawner_class = _module.ZeppelinSpawner
"""
COMMON_CONFIG = """
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.concurrent_spawn_limit = 0
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
"""
# --count-requests: every Kubernetes API request the hub makes, by verb and resource,
# written to $BENCH_REQUEST_COUNTS after each one (the API server's audit log is off)
COUNTING_CONFIG = """
import json as _json, os as _os, re as _re
from collections import Counter as _Counter
from kubernetes_asyncio.client import rest as _rest
_counts, _request = _Counter(), _rest.RESTClientObject.request
def _shape(method, url, query):
    path = _re.sub(r"^https?://[^/]+", "", url).split("?")[0]
    path = _re.sub(r"/namespaces/[^/]+/", "/namespaces/*/", path)
    parts = path.split("/")
    kinds = ("pods", "persistentvolumeclaims", "configmaps", "services", "namespaces",
             "serviceaccounts", "roles", "rolebindings", "resourcequotas", "networkpolicies",
             "events")
    named = parts[-2] in kinds if len(parts) > 2 else False
    resource = parts[-2] + "/NAME" if named else parts[-1]
    watch = "watch" if "watch=" in url or any(k == "watch" for k, _ in query or ()) else ""
    return f"{method} {resource} {watch}".strip()
async def _counted(self, method, url, query_params=None, *args, **kwargs):
    try:
        return await _request(self, method, url, query_params, *args, **kwargs)
    finally:
        _counts[_shape(method, url, query_params)] += 1
        with open(_os.environ["BENCH_REQUEST_COUNTS"], "w") as _f:
            _json.dump(_counts, _f)
_rest.RESTClientObject.request = _counted
"""


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    users: int = 50
    count_requests: bool = False
    zeppelin_from: Path | None = None  # another version of the ZeppelinSpawner's module


@dataclass
class HubRun:
    """What one hub measured: seconds to ready per user, and (if counted) API requests."""

    times: list[float]
    cluster_start: float
    requests: Counter = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the spawns
    hub_side: list[float] = field(default_factory=list)  # API request to pod create, per user


def bench_values(kind: str) -> dict:
    """The Zeppelin hubs' values; "zeppelin+gate" adds the reservation service's
    spawn-check before every start (capacity large enough that none queue)."""
    gate = {
        "enabled": kind == "zeppelin+gate",
        "port": free_port(),
        "capacity": {"cores": 100_000, "memory": "400Ti"},
    }
    return apply_defaults(
        demo_values(
            spawner={
                "kind": "zeppelin",
                "kubernetes": {"zeppelinImage": "bench/zeppelin", "sparkImage": "bench/spark"},
            },
            auth={"defaultTier": "standard"},
            reservations=gate,
        )
    )


def hub_config(kind: str, options: Options) -> str:
    """The hub's config for ``kind`` (the harness's settings are appended by HubProcess)."""
    config = KUBESPAWNER_CONFIG if kind == "kubespawner" else ZEPPELIN_CONFIG
    if kind != "kubespawner" and options.zeppelin_from:
        config += OTHER_SPAWNER_CONFIG.format(path=str(options.zeppelin_from.resolve()))
    return config + COMMON_CONFIG + (COUNTING_CONFIG if options.count_requests else "")


def spawn_one(hub: HubProcess, name: str) -> float:
    """Start ``name``'s server; seconds from the API request to the progress stream's ready."""
    session = requests.Session()
    session.headers.update(hub.api.headers)
    began = time.perf_counter()
    r = session.post(f"{hub.url}/hub/api/users/{name}/server", json={})
    assert r.status_code in (201, 202), r.text
    with session.get(
        f"{hub.url}/hub/api/users/{name}/server/progress", stream=True, timeout=600
    ) as progress:
        for line in progress.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("failed"):
                    raise RuntimeError(f"{name}: {event.get('message')}")
                if event.get("ready"):
                    return time.perf_counter() - began
    raise RuntimeError(f"{name}: progress ended without ready")


LOG_LINE = re.compile(r"\[I (\S+ \S+) JupyterHub \S+\] (.*)")
SPAWN_REQUESTED = re.compile(r"20[12] POST /hub/api/users/(\w+)/server ")
POD_REQUESTED = re.compile(r"Attempting to create pod \S*?-(\w+), ")


def hub_side_times(log: str) -> list[float]:
    """Per user, seconds from the hub's answer to the spawn request to its first request to
    create the pod: the spawner's own work before the cluster's (from the hub's log)."""
    asked: dict[str, float] = {}
    created: dict[str, float] = {}
    for line in log.splitlines():
        found = LOG_LINE.match(line)
        if not found:
            continue
        when = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if user := SPAWN_REQUESTED.search(found[2]):
            asked.setdefault(user[1], when)
        elif user := POD_REQUESTED.search(found[2]):
            created.setdefault(user[1], when)
    return [created[user] - asked[user] for user in asked if user in created]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one live process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process, the node agents summed as one."""
    found: Counter = Counter()
    for name, pid in pids.items():
        found["node agents" if name.startswith("nodeagent-") else name] += cpu_seconds(pid)
    return dict(found)


def run_hub(
    kind: str, dev: DevCluster, kubeconfig: Path, workdir: Path, options: Options
) -> tuple[list[float], Counter, dict[str, float]]:
    """One hub of ``kind`` as the hub ServiceAccount; ``users`` servers started at once.
    Also what the hub's API requests were (if counted) and the CPU each process used."""
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / "values.yaml"
    values = bench_values(kind)
    values_file.write_text(yaml.safe_dump(values))
    counts_file = workdir / "requests.json"
    env = {
        "KUBECONFIG": str(kubeconfig),
        "AGLAIS_VALUES": str(values_file),
        "BENCH_REQUEST_COUNTS": str(counts_file),
    }
    with HubProcess(workdir, hub_config(kind, options), env) as hub:
        if values["reservations"]["enabled"]:
            wait_for_http(f"{hub.url}/services/reservations/api/health", 60)
        names = [f"{kind[:4]}{i:03d}" for i in range(options.users)]
        for name in names:
            hub.api.post(f"{hub.url}/hub/api/users/{name}").raise_for_status()
        if counts_file.exists():  # only the spawns' requests
            counts_file.unlink()
        assert hub.process is not None
        pids = {"hub": hub.process.pid, **{n: p.pid for n, p in dev.children().items()}}
        before = cpu_by_role(pids)
        with ThreadPoolExecutor(max_workers=options.users) as pool:
            times = list(pool.map(lambda name: spawn_one(hub, name), names))
        cpu = {name: used - before.get(name, 0) for name, used in cpu_by_role(pids).items()}
        # read before the hub stops (KubeSpawner's hub deletes its pods on the way out)
        counted = Counter(json.loads(counts_file.read_text()) if counts_file.exists() else {})
    return times, counted, cpu


def run_kind(kind: str, rbac: HubRbac, root: Path, options: Options) -> HubRun:
    """A fresh cluster, the chart's hub ServiceAccount on it, one hub of ``kind``."""
    began = time.perf_counter()
    with DevCluster(
        root / "cluster", nodes=4, node_cpu="1000", node_memory="4Ti", images=IMAGES
    ) as dev:
        cluster_start = time.perf_counter() - began
        kubeconfig = HubAccount(dev, root / "account").create(rbac)
        times, counted, cpu = run_hub(kind, dev, kubeconfig, root / "hub", options)
    hub_side = hub_side_times((root / "hub" / "hub.log").read_text(errors="replace"))
    return HubRun(times, cluster_start, counted, cpu, hub_side)


KINDS = ("kubespawner", "zeppelin", "zeppelin+gate")


def run_round(index: int, root: Path, rbac: HubRbac, options: Options) -> dict[str, HubRun]:
    """One hub per kind, one after the other, starting at a different kind each round."""
    order = KINDS[index % len(KINDS) :] + KINDS[: index % len(KINDS)]
    return {kind: run_kind(kind, rbac, root / kind, options) for kind in order}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "-"


def report(rounds: list[dict[str, HubRun]], users: int) -> None:
    starts = [run.cluster_start for r in rounds for run in r.values()]
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{users} users spawning at once, {len(rounds)} round(s); "
        "times from API request to ready (s), medians over rounds (spread: min–max)"
    )
    print(
        f"cluster start-up (control plane, provisioner, 4 node agents): median "
        f"{statistics.median(starts):.1f} s, {spread(starts)} s over {len(starts)} starts"
    )
    print(f"{'spawner':<15}{'p50':>8}{'p95':>8}{'max':>8}   p50 spread   p95 spread")
    figures = {}
    for kind in KINDS:
        p50s = [statistics.median(r[kind].times) for r in rounds]
        p95s = [percentile(r[kind].times, 95) for r in rounds]
        worst = statistics.median(max(r[kind].times) for r in rounds)
        figures[kind] = (p50s, p95s)
        print(
            f"{kind:<15}{statistics.median(p50s):>8.2f}{statistics.median(p95s):>8.2f}"
            f"{worst:>8.2f}   {spread(p50s):>10}   {spread(p95s):>10}"
        )
    base = figures["kubespawner"]
    for kind in ("zeppelin", "zeppelin+gate"):
        ratios50 = [o / b for o, b in zip(figures[kind][0], base[0], strict=True)]
        ratios95 = [o / b for o, b in zip(figures[kind][1], base[1], strict=True)]
        print(
            f"ratio {kind}/kubespawner: p50 {statistics.median(ratios50):.2f} "
            f"({spread(ratios50)}), p95 {statistics.median(ratios95):.2f} "
            f"({spread(ratios95)}) (target: <= 1.10; medians of per-round ratios)"
        )
    print("hub side, from the spawn request to the pod's create request (s): p50 / p95")
    for kind in KINDS:
        p50s = [statistics.median(r[kind].hub_side) for r in rounds if r[kind].hub_side]
        p95s = [percentile(r[kind].hub_side, 95) for r in rounds if r[kind].hub_side]
        if p50s:
            print(
                f"    {kind:<15}{statistics.median(p50s):.2f} ({spread(p50s)}) / "
                f"{statistics.median(p95s):.2f} ({spread(p95s)})"
            )
    print("CPU seconds used during the spawns, per spawn (medians over rounds):")
    for kind in KINDS:
        roles = sorted(rounds[0][kind].cpu, key=lambda role: -rounds[0][kind].cpu[role])
        used = {
            role: statistics.median(r[kind].cpu.get(role, 0) for r in rounds) / users
            for role in roles
        }
        print(f"    {kind:<15}" + ", ".join(f"{role} {s:.3f}" for role, s in used.items()))
    for kind in KINDS:
        counted = rounds[0][kind].requests
        if counted:
            total = sum(counted.values())
            print(f"API requests per spawn, {kind}: {total / users:.1f}")
            for key, n in sorted(counted.items(), key=lambda item: -item[1]):
                print(f"    {n / users:6.2f}  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat all kinds; figures are medians over rounds"
    )
    parser.add_argument(
        "--count-requests", action="store_true", help="count the hubs' Kubernetes API requests"
    )
    parser.add_argument(
        "--zeppelin-from",
        type=Path,
        metavar="FILE",
        help="run this copy of spawners/zeppelin/spawner.py instead",
    )
    args = parser.parse_args()
    options = Options(args.users, args.count_requests, args.zeppelin_from)
    # the node agents (subprocesses with this environment) import the responder from here
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
    )
    rbac = hub_rbac()
    root = Path(tempfile.mkdtemp(prefix="bench-spawn-"))
    rounds = [run_round(r, root / f"round{r}", rbac, options) for r in range(args.rounds)]
    if args.zeppelin_from:
        print(f"ZeppelinSpawner from {args.zeppelin_from}")
    report(rounds, args.users)


if __name__ == "__main__":
    main()

"""Hub-side spawn time: ZeppelinSpawner against plain KubeSpawner, side by side.

N users start servers at once through a real JupyterHub on the testing cluster
(kubelet without start delay). To measure the spawners, not what runs in the pods,
both pods' server containers are the same tiny HTTP responder; ZeppelinSpawner still
creates everything it creates in production (namespace, RBAC, quota, network policy,
claim, Spark ConfigMap, pod, driver Service), KubeSpawner creates a namespace, a claim
and a pod. A third hub runs ZeppelinSpawner with the reservation service's spawn gate
(one spawn-check before every start). Prints p50/p95 of API-request-to-ready per user
for each, and the ratios against KubeSpawner; on a busy 2-core machine single rounds
vary by ±15 %, so use several rounds.

    .venv/bin/python bench/spawn.py [--users 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from aglais_hub.config import apply_defaults
from aglais_hub.demo import wait_for_http
from aglais_hub.testing.fakecluster.images import ContainerContext, LocalCommand
from aglais_hub.testing.fakecluster.runner import ClusterThread
from aglais_hub.testing.hubprocess import HubProcess
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
COMMON_CONFIG = """
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.concurrent_spawn_limit = 0
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
"""


def run_hub(kind: str, cluster: ClusterThread, users: int, workdir: Path) -> list[float]:
    # "zeppelin" measures the spawner alone; "zeppelin+gate" adds the reservation
    # service's spawn-check before every start (capacity large enough that none queue)
    gate = {"enabled": kind == "zeppelin+gate", "port": free_port(),
            "capacity": {"cores": 100_000, "memory": "400Ti"}}
    values = apply_defaults(demo_values(
        spawner={"kind": "zeppelin", "kubernetes": {"zeppelinImage": "bench/zeppelin",
                                                    "sparkImage": "bench/spark"}},
        auth={"defaultTier": "standard"}, reservations=gate))  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    config = (KUBESPAWNER_CONFIG if kind == "kubespawner" else ZEPPELIN_CONFIG) + COMMON_CONFIG
    env = {"KUBECONFIG": str(cluster.write_kubeconfig(workdir / "kubeconfig")),
           "AGLAIS_VALUES": str(values_file)}  # fmt: skip
    with HubProcess(workdir, config, env) as hub:
        if gate["enabled"]:
            wait_for_http(f"{hub.url}/services/reservations/api/health", 60)
        names = [f"{kind[:4]}{i:03d}" for i in range(users)]
        for name in names:
            hub.api.post(f"{hub.url}/hub/api/users/{name}").raise_for_status()

        def spawn(name: str) -> float:
            session = requests.Session()
            session.headers.update(hub.api.headers)
            began = time.perf_counter()
            r = session.post(f"{hub.url}/hub/api/users/{name}/server", json={})
            assert r.status_code in (201, 202), r.text
            with session.get(f"{hub.url}/hub/api/users/{name}/server/progress", stream=True,
                             timeout=600) as progress:  # fmt: skip
                for line in progress.iter_lines(decode_unicode=True):
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event.get("failed"):
                            raise RuntimeError(f"{name}: {event.get('message')}")
                        if event.get("ready"):
                            return time.perf_counter() - began
            raise RuntimeError(f"{name}: progress ended without ready")

        with ThreadPoolExecutor(max_workers=users) as pool:
            return list(pool.map(spawn, names))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


KINDS = ("kubespawner", "zeppelin", "zeppelin+gate")


def run_round(root: Path, users: int) -> dict[str, list[float]]:
    """One hub per kind, each on a fresh testing cluster, one after the other."""
    results = {}
    for kind in KINDS:
        cluster = ClusterThread(
            root=root / f"cluster-{kind}", nodes=4, node_cpu="1000", node_memory="4Ti"
        ).start()
        cluster.call(cluster.cluster.registry.register, "bench/*", responder)
        try:
            results[kind] = run_hub(kind, cluster, users, root / kind)
        finally:
            cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat all kinds; figures are medians over rounds")  # fmt: skip
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-spawn-"))
    rounds = [run_round(root / f"round{r}", args.users) for r in range(args.rounds)]
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.users} users spawning at once, {args.rounds} round(s); "
        "times from API request to ready (s), medians over rounds"
    )
    figures = {}
    print(f"{'spawner':<15}{'p50':>8}{'p95':>8}{'max':>8}")
    for kind in KINDS:
        p50 = statistics.median(statistics.median(r[kind]) for r in rounds)
        p95 = statistics.median(percentile(r[kind], 95) for r in rounds)
        worst = statistics.median(max(r[kind]) for r in rounds)
        figures[kind] = (p50, p95)
        print(f"{kind:<15}{p50:>8.2f}{p95:>8.2f}{worst:>8.2f}")
    base = figures["kubespawner"]
    for kind in ("zeppelin", "zeppelin+gate"):
        ours = figures[kind]
        print(f"ratio {kind}/kubespawner: p50 {ours[0] / base[0]:.2f}, "
              f"p95 {ours[1] / base[1]:.2f} (target: <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()

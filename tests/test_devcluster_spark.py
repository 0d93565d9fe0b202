"""Real Spark on the real control plane: a Zeppelin server's pod (spawners/zeppelin/
objects.py, the auth proxy and the Zeppelin stand-in with real PySpark 3.5 in client
mode) runs on our node agent and asks the real kube-apiserver for executor pods AS ITS
ServiceAccount ``spark-driver``, with its projected token; the agent runs them as
executor JVMs from pyspark's jars. RBAC decides: without pods/create in the Role no
executor starts, the driver's log has the API server's 403, and the auth proxy says
why. Also the node agent's test images that cannot be pulled or keep crashing.

The binaries come from `make cluster-bin`; without them these tests skip, and under
CI=true they fail. One DevCluster serves the module; each test has its own namespace.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import tests.test_controlplane as controlplane_tests
from aglais_hub.offering import ClusterSize, Tier
from aglais_hub.podproxy.sparkrights import NEEDED_VERBS, account_of, spark_rights_problem
from aglais_hub.testing.nodeagent import processes
from spawners.zeppelin import objects
from tests.test_controlplane import eventually
from tests.test_devcluster import _core

namespace = controlplane_tests.namespace  # a fresh namespace per test (uses `api`)
MiB = 2**20
HUB_TOKEN = "alice-test-token"  # what the fake hub below accepts as alice's


def cluster_test(test):  # noqa: ANN001, ANN201
    """On the real control plane (the unit tests further down need no binaries)."""
    return pytest.mark.e2e(pytest.mark.controlplane(test))


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the hub's API for the auth proxy to know alice by her token."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("Authorization") != f"token {HUB_TOKEN}":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps(
            {
                "kind": "user",
                "name": "alice",
                "admin": False,
                "groups": [],
                "scopes": ["access:servers!server=alice/"],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    server.shutdown()
    server.server_close()


def server_spec(
    namespace: str, hub_api: str, image: str = "ghcr.io/aglais/zeppelin:test"
) -> objects.ServerSpec:
    """alice's server, small: executors of 1 core and 512 MiB, at most two."""
    tier = Tier("basic", 0, "Basic", 2**30, 2, 1, 512 * MiB, 1, 1024 * MiB, 1)
    env = {
        "JUPYTERHUB_API_URL": hub_api,
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "JUPYTERHUB_API_TOKEN": "server-token",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=alice/"]),
    }
    return objects.ServerSpec(
        username="alice",
        server_name="",
        namespace=namespace,
        pod_name="zeppelin-alice",
        pvc_name="claim-alice",
        tier=tier,
        size=ClusterSize.from_tier(tier),
        settings=objects.KubernetesSettings(image, "ghcr.io/aglais/spark:3.5.9"),
        env=env,
    )


def start_server(api, spec: objects.ServerSpec, role: dict) -> dict:
    """The spawner's objects for one server (its own namespace is the test's), as the
    admin; the pod, once Ready."""
    from kubernetes import client

    core, rbac = _core(api), client.RbacAuthorizationV1Api(api)
    ns = spec.namespace
    core.create_namespaced_service_account(ns, objects.service_account(spec))
    rbac.create_namespaced_role(ns, role)
    rbac.create_namespaced_role_binding(ns, objects.role_binding(spec))
    core.create_namespaced_persistent_volume_claim(ns, objects.persistent_volume_claim(spec))
    core.create_namespaced_config_map(ns, objects.spark_config_map(spec))
    core.create_namespaced_pod(ns, objects.pod(spec))

    def ready() -> object:
        pod = core.read_namespaced_pod(spec.pod_name, ns)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" else None

    pod = eventually(ready, "the server's pod to be Ready", timeout=90)
    # Ready is the auth proxy's word; Zeppelin may still be starting
    eventually(lambda: zeppelin(pod, "version", timeout=5), "Zeppelin to answer", timeout=60)
    return pod


def zeppelin(pod, path: str, body: object = None, timeout: float = 30) -> dict:
    """Zeppelin's REST API (the stand-in's), at the pod's own address."""
    url = f"http://{pod.status.pod_ip}:{objects.ZEPPELIN_PORT}/user/alice/api/{path}"
    data = json.dumps(body).encode() if body is not None else None
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(
        url, data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())["body"]


def proxy(pod, path: str, token: str | None = HUB_TOKEN) -> dict:
    """The auth proxy at the pod's notebook port, as alice (her hub token) or nobody."""
    url = f"http://{pod.status.pod_ip}:{objects.PROXY_PORT}/user/alice/{path}"
    headers = {"Authorization": f"token {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def executor_pods(api, ns: str) -> list:
    return _core(api).list_namespaced_pod(ns, label_selector="spark-role=executor").items


SUM = "%pyspark\nprint(spark.range(0, 10**6, numPartitions=8).selectExpr('sum(id)').first()[0])"


@cluster_test
def test_spark_executors_are_pods_of_the_drivers_service_account(api, dev, namespace, hub):
    """A %pyspark paragraph sums a million numbers on executor pods the driver created
    as spark-driver (the Role is what lets it), owned by the driver's pod; deleting that
    pod lets the real garbage collector remove the executors, and the agent their JVMs."""
    spec = server_spec(namespace, hub)
    pod = start_server(api, spec, objects.role(spec))
    note = zeppelin(pod, "notebook", {"name": "sum", "paragraphs": [{"text": SUM}]})
    paragraph = zeppelin(pod, f"notebook/{note}")["paragraphs"][0]["id"]
    result = zeppelin(pod, f"notebook/run/{note}/{paragraph}", {}, timeout=150)
    log = dev.read_log(namespace, spec.pod_name, "zeppelin")
    assert result["code"] == "SUCCESS", (result, log[-3000:])
    assert result["msg"][0]["data"].strip() == "499999500000"

    executors = executor_pods(api, namespace)
    assert executors, "no executor pods"
    for executor in executors:
        assert executor.metadata.name.startswith("zeppelin-alice-exec-")
        (owner,) = executor.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Pod", spec.pod_name, pod.metadata.uid)
        assert executor.status.phase == "Running"
        assert executor.status.pod_ip.startswith(dev.node_prefix("node-1"))
    # the API server saw the ServiceAccount: the executors were created through its Role
    # (a Role without pods/create creates none: the next test), with the https master
    conf = (dev.root / "nodes" / "node-1" / "pods").glob(
        f"{namespace}_{spec.pod_name}_*/spark-conf/spark-defaults.conf"
    )
    (conf,) = list(conf)
    properties = dict(line.split(" ", 1) for line in conf.read_text().splitlines())
    assert properties["spark.master"] == f"k8s://{dev.server}"  # https, the real API server
    token = Path(properties["spark.kubernetes.authenticate.oauthTokenFile"])
    assert token.parent.name.startswith("kube-api-access-")  # the pod's projected volume
    claims = json.loads(base64.urlsafe_b64decode(token.read_text().split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{namespace}:spark-driver"

    marks = [processes.mark(dev.cluster_id, "node-1", e.metadata.uid) for e in executors]
    assert all(processes.find(mark) for mark in marks)  # the executor JVMs run
    _core(api).delete_namespaced_pod(spec.pod_name, namespace)
    eventually(
        lambda: not executor_pods(api, namespace), "the executors to be collected", timeout=90
    )
    eventually(
        lambda: not any(processes.find(mark) for mark in marks),
        "the executor processes to end",
        timeout=30,
    )


@cluster_test
def test_a_role_without_pods_create_starts_no_executor_and_the_user_is_told(
    api, dev, namespace, hub
):
    """The same server with a Role lacking pods/create: the API server refuses the
    driver's executors (its log has the 403), none is created, and the auth proxy's
    health and notice bar say why in words a user can act on."""
    spec = server_spec(namespace, hub)
    role = objects.role(spec)
    for rule in role["rules"]:
        if rule["resources"] == ["pods"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    pod = start_server(api, spec, role)
    # both containers have the pod's token (automounted into every container)
    for container in pod.spec.containers:
        assert objects_mount(container) == "/var/run/secrets/kubernetes.io/serviceaccount"

    expected = (
        f"Spark cannot start executors: this server's service account (spark-driver) "
        f"may not create pods in namespace {namespace}. Ask an administrator to check "
        f"the spark-driver Role."
    )
    health = eventually(
        lambda: (h := proxy(pod, "_aglais/health")).get("spark") and h,
        "the auth proxy to report Spark's rights",
        timeout=30,
    )
    assert health == {"proxy": "ok", "zeppelin": "up", "spark": f"forbidden: {expected}"}
    assert proxy(pod, "_aglais/notice")["notices"] == [{"kind": "spark", "message": expected}]
    assert proxy(pod, "_aglais/health", token=None) == {"status": "ok"}  # nothing for others

    note = zeppelin(pod, "notebook", {"name": "sum", "paragraphs": [{"text": SUM}]})
    zeppelin(pod, f"notebook/job/{note}", {})  # runs in the background, waiting for executors

    def refused() -> str | None:
        text = dev.read_log(namespace, spec.pod_name, "zeppelin")
        return text if 'cannot create resource "pods"' in text else None

    log = eventually(refused, "the driver to log the API server's refusal", timeout=90)
    assert f"system:serviceaccount:{namespace}:spark-driver" in log  # refused as itself
    assert executor_pods(api, namespace) == []
    status = zeppelin(pod, f"notebook/job/{note}")["paragraphs"][0]["status"]
    assert status == "RUNNING"  # Spark itself only waits


def objects_mount(container) -> str:  # noqa: ANN001 - a kubernetes V1Container
    (mount,) = [
        m.mount_path for m in container.volume_mounts if m.name.startswith("kube-api-access-")
    ]
    return mount


def _waiting(api, ns: str, name: str) -> tuple[str, str, int] | None:
    pod = _core(api).read_namespaced_pod(name, ns)
    statuses = pod.status.container_statuses or []
    if not statuses or not statuses[0].state.waiting:
        return None
    return statuses[0].state.waiting.reason, pod.status.phase, statuses[0].restart_count


def _events(api, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = _core(api).list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return [(e.reason, e.type, e.message) for e in items.items if e.source.component == "kubelet"]


@cluster_test
def test_an_image_that_cannot_be_pulled_leaves_the_pod_pending_in_back_off(api, namespace):
    image = "ghcr.io/aglais/zeppelin:unpullable"
    _core(api).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "nopull"},
            "spec": {"containers": [{"name": "main", "image": image}]},
        },
    )
    seen = set()

    def both() -> bool:
        waiting = _waiting(api, namespace, "nopull")
        if waiting:
            seen.add(waiting[:2])
        return {("ErrImagePull", "Pending"), ("ImagePullBackOff", "Pending")} <= seen

    eventually(both, "ErrImagePull, then ImagePullBackOff", timeout=30)
    pod = _core(api).read_namespaced_pod("nopull", namespace)
    assert pod.status.phase == "Pending"
    waiting = pod.status.container_statuses[0].state.waiting
    assert f'image "{image}"' in waiting.message and "not found" in waiting.message
    events = eventually(
        lambda: (
            (found := _events(api, namespace, "nopull"))
            and any(e[0] == "BackOff" for e in found)
            and found
        ),
        "the BackOff event",
    )
    reasons = {(reason, kind) for reason, kind, _ in events}
    assert {("Pulling", "Normal"), ("Failed", "Warning"), ("BackOff", "Normal")} <= reasons
    messages = [message for _, _, message in events]
    assert any(m.startswith(f'Failed to pull image "{image}": ') for m in messages)
    assert "Error: ErrImagePull" in messages and "Error: ImagePullBackOff" in messages
    assert f'Back-off pulling image "{image}"' in messages
    assert not any(reason in ("Started", "Pulled") for reason, _, _ in events)


@cluster_test
def test_an_image_that_crashes_restarts_in_crash_loop_back_off(api, dev, namespace):
    _core(api).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "crash"},
            "spec": {"containers": [{"name": "main", "image": "ghcr.io/aglais/zeppelin:crashing"}]},
        },
    )
    waiting = eventually(
        lambda: (
            (w := _waiting(api, namespace, "crash"))
            and w[0] == "CrashLoopBackOff"
            and w[2] >= 2
            and w
        ),
        "two restarts",
    )
    assert waiting[1] == "Running"  # as a kubelet reports a pod whose container restarts
    status = _core(api).read_namespaced_pod("crash", namespace).status.container_statuses[0]
    assert status.last_state.terminated.exit_code == 1
    assert "crashed at start" in dev.read_log(namespace, "crash", "main")
    reasons = [reason for reason, _, _ in _events(api, namespace, "crash")]
    assert "BackOff" in reasons and reasons.count("Started") >= 2


# -- the decision, without a cluster -------------------------------------------------------


def _token(sub: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{claims}.signature"


def test_a_driver_that_may_do_everything_to_pods_has_no_problem():
    assert (
        spark_rights_problem("spark-driver", "aglais-alice", dict.fromkeys(NEEDED_VERBS, True))
        is None
    )


def test_each_refused_verb_is_named_with_the_account_and_namespace():
    allowed = {"create": False, "list": True, "watch": False, "delete": True}
    assert spark_rights_problem("spark-driver", "aglais-alice", allowed) == (
        "Spark cannot start executors: this server's service account (spark-driver) may not "
        "create or watch pods in namespace aglais-alice. Ask an administrator to check the "
        "spark-driver Role."
    )
    assert "may not delete pods" in spark_rights_problem(
        "sa", "ns", {"create": True, "list": True, "watch": True}
    )


def test_the_account_is_read_from_a_service_account_token_only():
    assert account_of(_token("system:serviceaccount:aglais-alice:spark-driver")) == "spark-driver"
    assert account_of(_token("alice")) is None
    assert account_of("not a token") is None

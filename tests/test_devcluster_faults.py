"""Faults of the testing cluster's own parts (aglais_hub.testing.devcluster): the real
kube-apiserver and etcd stopped and started again, a node agent killed and restarted,
and a node agent frozen until the real node-lifecycle controller marks its Node not
ready.

One DevCluster serves the module, its node grace period shortened to 20s (the tests
change its processes, so it is not conftest's shared `dev`). Without the control-plane
binaries these skip (under CI=true they fail).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid

import pytest

from aglais_hub.testing.nodeagent import processes
from aglais_hub.testing.nodeagent.client import ApiError, Credentials, request_sync
from tests.test_controlplane import eventually
from tests.test_devcluster import _listening, _web_pod

GRACE = 20  # --node-monitor-grace-period for this module's cluster
pytestmark = [pytest.mark.e2e, pytest.mark.controlplane, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def faulty(cluster_bin, tmp_path_factory):  # noqa: ANN201
    from aglais_hub.testing.devcluster import DevCluster

    cluster = DevCluster(
        tmp_path_factory.mktemp("faulty"), bin_dir=cluster_bin, node_monitor_grace_period=GRACE
    ).start()
    try:
        yield cluster
    finally:
        children = list(cluster.control_plane.started) + list(cluster.children().values())
        left = cluster.stop()
        assert left == []
        assert all(process.poll() is not None for process in children)


def _admin(dev, method: str, path: str, body: object = None, timeout: float = 30) -> dict:
    return request_sync(
        Credentials.from_kubeconfig(dev.kubeconfig), method, path, body, timeout=timeout
    )


def _configmap(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"made": name},
    }


def _readyz(dev) -> tuple[int, str]:
    pki = dev.control_plane.pki
    context = ssl.create_default_context(cafile=str(dev.ca_file))
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    try:
        with urllib.request.urlopen(
            f"{dev.server}/readyz?verbose", timeout=5, context=context
        ) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _fails(call) -> BaseException | None:  # noqa: ANN001
    try:
        call()
    except (ApiError, OSError) as error:
        return error
    return None


def _node(dev, name: str = "node-1") -> dict:
    return _admin(dev, "GET", f"/api/v1/nodes/{name}")


def _ready(node: dict) -> str:
    (ready,) = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    return ready["status"]


def _running_pod(dev, name: str) -> dict:
    _admin(dev, "POST", "/api/v1/namespaces/default/pods", _web_pod(name))

    def ready() -> dict | None:
        pod = _admin(dev, "GET", f"/api/v1/namespaces/default/pods/{name}")
        statuses = pod["status"].get("containerStatuses") or []
        return pod if statuses and statuses[0]["ready"] else None

    return eventually(ready, f"pod {name} to be Ready", timeout=60)


def test_a_killed_agent_leaves_its_pod_serving_and_restarts_it_when_back(faulty):
    """SIGKILL: the pod's process serves on with nobody watching, and the API still
    says Running; the agent started again ends it and starts the pod anew (same address,
    restart counted)."""
    dev = faulty
    pod = _running_pod(dev, "survivor")
    ip, uid = pod["status"]["podIP"], pod["metadata"]["uid"]
    mark = processes.mark(dev.cluster_id, "node-1", uid)
    first = processes.find(mark)
    assert first

    dev.stop_agent("node-1", kill=True)
    assert "node-1" not in dev.agents and processes.find(mark) == first
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as answer:
        assert answer.status == 200
    assert (
        _admin(dev, "GET", "/api/v1/namespaces/default/pods/survivor")["status"]["phase"]
        == "Running"
    )

    dev.start_agent("node-1")

    def restarted() -> dict | None:
        now = _admin(dev, "GET", "/api/v1/namespaces/default/pods/survivor")
        (status,) = now["status"].get("containerStatuses") or [{}]
        return now if status.get("ready") and status.get("restartCount") == 1 else None

    again = eventually(restarted, "the pod to run again", timeout=40)
    assert again["status"]["podIP"] == ip and again["metadata"]["uid"] == uid
    assert not set(first) & set(processes.find(mark))
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as answer:
        assert answer.status == 200
    _admin(dev, "DELETE", "/api/v1/namespaces/default/pods/survivor", {"gracePeriodSeconds": 0})


def test_a_frozen_agent_makes_its_node_not_ready_until_it_resumes(faulty):
    dev = faulty
    assert _ready(_node(dev)) == "True"
    frozen = time.monotonic()
    dev.node_not_ready("node-1")
    try:
        # the Lease was renewed up to 10s before; then GRACE, then the controller's period
        node = eventually(
            lambda: (n := _node(dev)) and _ready(n) != "True" and n,
            "the node to be marked not ready",
            timeout=GRACE + 30,
        )
        assert time.monotonic() - frozen >= GRACE - 10
        assert _ready(node) == "Unknown"
        (ready,) = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready["reason"] == "NodeStatusUnknown"
        # the controller taints the node in its next pass, moments after the condition
        eventually(
            lambda: (
                "node.kubernetes.io/unreachable"
                in [t["key"] for t in _node(dev)["spec"].get("taints") or []]
            ),
            "the node to be tainted unreachable",
            timeout=15,
        )
        assert dev.agents["node-1"].poll() is None  # frozen, not gone
    finally:
        dev.resume_node("node-1")
    # the Lease is renewed at once; Ready comes with the agent's next status post
    back = eventually(
        lambda: (n := _node(dev)) and _ready(n) == "True" and n,
        "the node to be Ready again",
        timeout=90,
    )
    eventually(lambda: "node-1" in dev.ready_nodes(), "the node to be schedulable", timeout=30)
    assert back["metadata"]["name"] == "node-1"


def test_an_apiserver_restart_fails_requests_then_serves_the_same_objects(faulty):
    dev = faulty
    name = f"kept-{uuid.uuid4().hex[:6]}"
    _admin(dev, "POST", "/api/v1/namespaces/default/configmaps", _configmap(name))
    server, pid = dev.server, dev.control_plane.processes["kube-apiserver"].pid

    dev.control_plane.stop_component("kube-apiserver")
    refused = _fails(lambda: _admin(dev, "GET", "/api/v1/namespaces/default/configmaps", timeout=5))
    assert isinstance(refused, OSError) and not isinstance(refused, ApiError)
    # through the fault proxy: its own 503 Status, saying why
    context = ssl.create_default_context(cafile=str(dev.ca_file))
    with pytest.raises(urllib.error.HTTPError) as proxied:
        urllib.request.urlopen(
            f"{dev.fault_proxy_server}/api/v1/namespaces", timeout=10, context=context
        )
    status = json.loads(proxied.value.read())
    assert proxied.value.code == 503 and "unreachable" in status["message"]

    dev.control_plane.start_component("kube-apiserver")
    assert dev.server == server and dev.control_plane.processes["kube-apiserver"].pid != pid
    assert _readyz(dev)[0] == 200
    kept = _admin(dev, "GET", f"/api/v1/namespaces/default/configmaps/{name}")
    assert kept["data"] == {"made": name}
    _admin(dev, "POST", "/api/v1/namespaces/default/configmaps", _configmap(f"{name}-after"))

    dev.restart_apiserver(kill=True)  # and in one call, after a crash
    assert _admin(dev, "GET", f"/api/v1/namespaces/default/configmaps/{name}-after")
    # the node agent's watch came back: a pod made now is run
    pod = _running_pod(dev, "after-restart")
    assert _listening(pod["status"]["podIP"], 8080)
    _admin(
        dev, "DELETE", "/api/v1/namespaces/default/pods/after-restart", {"gracePeriodSeconds": 0}
    )


def test_an_etcd_restart_fails_writes_then_keeps_the_data(faulty):
    dev = faulty
    name = f"etcd-{uuid.uuid4().hex[:6]}"
    _admin(dev, "POST", "/api/v1/namespaces/default/configmaps", _configmap(name))

    dev.control_plane.stop_component("etcd")
    failed = _fails(
        lambda: _admin(
            dev,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            _configmap(f"{name}-lost"),
            timeout=4,
        )
    )
    # the API server is up, but cannot store: an error or no answer in time
    assert failed is not None
    assert not isinstance(failed, ApiError) or failed.status >= 500
    status, text = eventually(
        lambda: (r := _readyz(dev))[0] != 200 and r, "/readyz to report etcd", timeout=30
    )
    assert "[-]etcd" in text

    dev.control_plane.start_component("etcd")  # waits for /readyz again
    assert _readyz(dev)[0] == 200
    assert _admin(dev, "GET", f"/api/v1/namespaces/default/configmaps/{name}")["data"]
    _admin(dev, "POST", "/api/v1/namespaces/default/configmaps", _configmap(f"{name}-after"))
    dev.restart_etcd(kill=True)
    assert _admin(dev, "GET", f"/api/v1/namespaces/default/configmaps/{name}-after")

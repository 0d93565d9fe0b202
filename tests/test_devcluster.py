"""The testing cluster on the real control plane: our node agents run the pods the real
kube-scheduler binds to them, our provisioner makes their volumes, and the unmodified
KubeSpawner behind a real hub spawns on it (aglais_hub.testing.devcluster).

The binaries come from `make cluster-bin`; without them these tests skip, and under
CI=true they fail (the fixture is test_controlplane's). One cluster serves the module;
each test works in a namespace of its own. NetworkPolicy is not enforced here (no CNI):
nothing below leans on it.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest

import tests.test_controlplane as controlplane_tests
from aglais_hub.testing.hubprocess import HubProcess
from tests.test_controlplane import eventually
from tests.test_spawn_gate import progress

# a fresh namespace per test, made with this module's `api` (the dev cluster's client)
namespace = controlplane_tests.namespace


def cluster_test(test):  # noqa: ANN001, ANN201
    """On the real control plane (the unit tests further down need no binaries)."""
    return pytest.mark.e2e(pytest.mark.controlplane(test))


SERVER = """
import http.server, signal, sys
def bye(*_):
    print("SIGTERM received", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
server = http.server.HTTPServer(("0.0.0.0", 8080), http.server.SimpleHTTPRequestHandler)
print("serving", flush=True)
server.serve_forever()
"""

# The official client's in-cluster config, unmodified but for where it looks: the
# process is not in a container, so the token and CA paths it reads are written here as
# the container sees them and the node agent rewrites them to the volume's directory
# (as it rewrites every path under a mount in command, args and env).
IN_CLUSTER = """
import sys
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config
incluster_config.SERVICE_TOKEN_FILENAME = "/var/run/secrets/kubernetes.io/serviceaccount/token"
incluster_config.SERVICE_CERT_FILENAME = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review({})
print("user", review.status.user_info.username, flush=True)
try:
    pods = client.CoreV1Api().list_namespaced_pod(namespace)
except ApiException as error:
    print("refused", error.status, flush=True)
    sys.exit(3)
print("pods", " ".join(sorted(p.metadata.name for p in pods.items)), flush=True)
"""


def _core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


def _gone(api, namespace: str, name: str) -> bool:
    return name not in [p.metadata.name for p in _core(api).list_namespaced_pod(namespace).items]


def _events(api, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = (
        _core(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    # the scheduler writes events.k8s.io Events (reportingController), the agent core ones
    return [
        (e.reason, e.message, (e.source and e.source.component) or e.reporting_component)
        for e in items
    ]


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _web_pod(name: str, **spec: object) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            **spec,
            "containers": [
                {
                    "name": "web",
                    "image": "local/python",
                    "command": ["python", "-c", SERVER],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": "http"},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


@cluster_test
def test_a_pod_is_scheduled_runs_answers_and_is_stopped(api, dev, namespace):
    core = _core(api)
    started = time.monotonic()
    core.create_namespaced_pod(namespace, _web_pod("web"))

    def ready() -> object:
        pod = core.read_namespaced_pod("web", namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" else None

    pod = eventually(ready, "the pod to be Ready", timeout=30)
    assert time.monotonic() - started < 10
    assert pod.spec.node_name == "node-1"  # bound by the real scheduler
    assert pod.status.phase == "Running"
    assert pod.status.host_ip == dev.node_prefix("node-1") + "0.1"
    ip = pod.status.pod_ip
    assert ip.startswith(dev.node_prefix("node-1")) and ip != pod.status.host_ip
    assert [i.ip for i in pod.status.pod_ips] == [ip]
    (status,) = pod.status.container_statuses
    assert status.ready and status.started and status.restart_count == 0
    assert status.state.running.started_at is not None
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as answer:
        assert answer.status == 200
    events = _events(api, namespace, "web")
    assert (
        "Scheduled",
        f"Successfully assigned {namespace}/web to node-1",
        "default-scheduler",
    ) in events
    assert ("Started", "Started container web", "kubelet") in events

    core.delete_namespaced_pod("web", namespace)  # the default grace: 30 s
    eventually(lambda: _gone(api, namespace, "web"), "the pod to go", timeout=20)
    assert "SIGTERM received" in dev.read_log(namespace, "web", "web")
    assert not _listening(ip, 8080)
    assert ("Killing", "Stopping container web", "kubelet") in _events(api, namespace, "web")


@cluster_test
def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(api, dev, namespace):
    core = _core(api)
    stubborn = {
        "metadata": {"name": "stubborn"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "local/python",
                    "command": [
                        "python",
                        "-c",
                        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                        "print('up', flush=True); time.sleep(600)",
                    ],
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, stubborn)
    eventually(lambda: "up" in dev.read_log(namespace, "stubborn", "main"), "the process")
    assert len(dev.pod_processes()) >= 1
    before = set(dev.pod_processes())
    began = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    eventually(lambda: _gone(api, namespace, "stubborn"), "the pod to go", timeout=20)
    assert 0.9 <= time.monotonic() - began < 10
    assert not before & set(dev.pod_processes())


@cluster_test
def test_a_killed_agent_started_again_takes_its_pods_back(api, dev, namespace):
    """A crashed kubelet leaves its containers running; ours leaves its processes, and
    when it starts again it ends them and starts the pods again (at the same address,
    with the restart counted)."""
    from aglais_hub.testing.nodeagent import processes

    core = _core(api)
    core.create_namespaced_pod(namespace, _web_pod("web"))

    def ready(restarts: int) -> object:
        pod = core.read_namespaced_pod("web", namespace)
        (status,) = pod.status.container_statuses or [None]
        return pod if status and status.ready and status.restart_count == restarts else None

    pod = eventually(lambda: ready(0), "the pod to be Ready", timeout=30)
    mark = processes.mark(dev.cluster_id, "node-1", pod.metadata.uid)
    first = processes.find(mark)
    assert first
    dev.stop_agent("node-1", kill=True)
    assert processes.find(mark) == first  # still serving, with nobody watching
    dev.start_agent("node-1")
    again = eventually(lambda: ready(1), "the pod to run again", timeout=30)
    assert again.status.pod_ip == pod.status.pod_ip
    assert not set(first) & set(processes.find(mark))
    with urllib.request.urlopen(f"http://{again.status.pod_ip}:8080/", timeout=5) as answer:
        assert answer.status == 200
    core.delete_namespaced_pod("web", namespace, grace_period_seconds=5)
    eventually(lambda: _gone(api, namespace, "web"), "the pod to go", timeout=20)


@cluster_test
def test_an_in_pod_client_authenticates_as_its_service_account(api, dev, namespace):
    """The projected token: the official client's in-cluster config, inside a pod, is
    the pod's ServiceAccount; RBAC lets it list pods only where a RoleBinding says so."""
    from kubernetes import client

    core, rbac = _core(api), client.RbacAuthorizationV1Api(api)
    for account in ("reader", "stranger"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "list-pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-lists-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "list-pods",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    for account in ("reader", "stranger"):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": account},
                "spec": {
                    "serviceAccountName": account,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "local/python",
                            "command": ["python", "-c", IN_CLUSTER],
                        }
                    ],
                },
            },
        )

    def finished(name: str) -> object:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    reader = eventually(lambda: finished("reader"), "the reader to finish", timeout=60)
    stranger = eventually(lambda: finished("stranger"), "the stranger to finish", timeout=60)
    logs = {name: dev.read_log(namespace, name, "main") for name in ("reader", "stranger")}
    assert reader.status.phase == "Succeeded", logs
    assert reader.status.container_statuses[0].state.terminated.exit_code == 0
    assert f"user system:serviceaccount:{namespace}:reader" in logs["reader"]
    assert "pods reader stranger" in logs["reader"]
    assert stranger.status.phase == "Failed", logs
    assert stranger.status.container_statuses[0].state.terminated.exit_code == 3
    assert f"user system:serviceaccount:{namespace}:stranger" in logs["stranger"]
    assert "refused 403" in logs["stranger"]
    # the projected volume the ServiceAccount admission plugin added, as the node wrote it
    (volume,) = reader.spec.volumes
    assert volume.projected.sources[0].service_account_token.path == "token"
    mounts = [m.mount_path for m in reader.spec.containers[0].volume_mounts]
    assert mounts == ["/var/run/secrets/kubernetes.io/serviceaccount"]


@cluster_test
def test_a_claim_is_provisioned_mounted_and_grown(api, dev, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = _core(api)
    storage = client.StorageV1Api(api)
    (default,) = [
        c
        for c in storage.list_storage_class().items
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert default.metadata.name == "aglais-local" and default.allow_volume_expansion
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    claim = eventually(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim("data", namespace)).status.phase
            == "Bound"
            and c
        ),
        "the claim to be Bound",
    )
    assert claim.spec.storage_class_name == "aglais-local"  # the default, by admission
    assert claim.status.capacity == {"storage": "1Gi"}
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.claim_ref.uid == claim.metadata.uid
    directory = volume.spec.host_path.path
    assert directory.startswith(str(dev.volumes_dir))

    # an init container first, then the main one with a Secret volume and ConfigMap env
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}
    )
    write = (
        "import os; first = open('/data/first.txt').read(); "
        "password = open('/etc/creds/password').read(); "
        "open('/data/hello.txt', 'w').write(f'{first} {password} {os.environ[\"MODE\"]}')"
    )
    data = [{"name": "data", "mountPath": "/data"}]
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "writer"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                ],
                "initContainers": [
                    {
                        "name": "prepare",
                        "image": "local/python",
                        "volumeMounts": data,
                        "command": ["python", "-c", "open('/data/first.txt', 'w').write('init')"],
                    }
                ],
                "containers": [
                    {
                        "name": "main",
                        "image": "local/python",
                        "command": ["python", "-c", write],
                        "env": [
                            {
                                "name": "MODE",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "settings", "key": "mode"}
                                },
                            }
                        ],
                        "volumeMounts": [
                            *data,
                            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                        ],
                    }
                ],
            },
        },
    )
    writer = eventually(
        lambda: (
            (p := core.read_namespaced_pod("writer", namespace)).status.phase
            in ("Succeeded", "Failed")
            and p
        ),
        "the writer to finish",
    )
    assert writer.status.phase == "Succeeded", dev.read_log(namespace, "writer", "main")
    assert writer.status.init_container_statuses[0].state.terminated.exit_code == 0
    with open(f"{directory}/hello.txt") as written:
        assert written.read() == "init s3cret fast"

    core.patch_namespaced_persistent_volume_claim(
        "data", namespace, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    )
    eventually(
        lambda: (
            core.read_namespaced_persistent_volume_claim("data", namespace).status.capacity
            == {"storage": "2Gi"}
        ),
        "the claim's capacity",
    )
    assert core.read_persistent_volume(volume.metadata.name).spec.capacity == {"storage": "2Gi"}
    grown = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert grown.status.allocated_resources == {"storage": "2Gi"}
    assert "Resizing" not in [c.type for c in grown.status.conditions or []]
    reasons = [e[0] for e in _events(api, namespace, "data")]
    assert "ProvisioningSucceeded" in reasons and "VolumeResizeSuccessful" in reasons
    with pytest.raises(ApiException) as shrink:  # refused by the API server itself
        core.patch_namespaced_persistent_volume_claim(
            "data", namespace, {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
        )
    assert shrink.value.status == 422
    assert "can not be less than status.capacity" in shrink.value.body

    # reclaim policy Delete: the claim gone, the provisioner deletes the volume and its
    # directory (a scheduled pod naming the claim, even a finished one, holds it: first it)
    core.delete_namespaced_pod("writer", namespace)
    eventually(lambda: _gone(api, namespace, "writer"), "the writer to go")
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    eventually(
        lambda: (
            volume.metadata.name
            not in [v.metadata.name for v in core.list_persistent_volume().items]
        ),
        "the volume to go",
    )
    assert not os.path.exists(directory)


KUBESPAWNER_CONFIG = """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = "jhub"
c.KubeSpawner.image = "aglais/singleuser:test"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
c.KubeSpawner.start_timeout = 90
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.delete_grace_period = 1
"""


@cluster_test
def test_kubespawner_spawns_on_the_node_agents(api, dev, tmp_path):
    """The acceptance point: the unmodified KubeSpawner behind a real hub, as the chart's
    hub ServiceAccount with the chart's ClusterRole (a token, not the admin); the claim
    has no class, so the default one (ours) provisions it."""
    from aglais_hub.testing.hubaccount import HubAccount, hub_rbac

    core = _core(api)
    core.create_namespace({"metadata": {"name": "jhub"}})
    eventually(lambda: core.read_namespaced_service_account("default", "jhub"), "the SA")
    kubeconfig = HubAccount(dev, tmp_path / "account").create(hub_rbac())
    with HubProcess(tmp_path / "hub", KUBESPAWNER_CONFIG, {"KUBECONFIG": str(kubeconfig)}) as hub:
        url, session = hub.url, hub.api
        assert session.post(f"{url}/hub/api/users/alice").status_code == 201
        assert session.post(f"{url}/hub/api/users/alice/server").status_code == 202
        events = progress(hub, "alice", "", timeout=120)
        messages, event = [e.get("message", "") for e in events], events[-1]
        assert event.get("ready"), (messages, (tmp_path / "hub" / "hub.log").read_text()[-3000:])
        text = "\n".join(messages)
        assert "Successfully assigned jhub/jupyter-alice to node-1" in text
        assert "Started container notebook" in text

        claim = core.read_namespaced_persistent_volume_claim("claim-alice", "jhub")
        assert claim.status.phase == "Bound" and claim.spec.storage_class_name == "aglais-local"
        pod = core.read_namespaced_pod("jupyter-alice", "jhub")
        assert pod.status.phase == "Running" and pod.spec.node_name == "node-1"
        routes = session.get(f"{url}/hub/api/proxy").json()
        assert routes["/user/alice/"]["target"] == f"http://{pod.status.pod_ip}:8888"
        status = session.get(f"{url}/user/alice/api/status")
        assert status.status_code == 200 and "started" in status.json()
        home = core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path
        assert any(Path(home).iterdir()), "the server wrote nothing to its home volume"

        assert session.delete(f"{url}/hub/api/users/alice/server").status_code in (202, 204)
        eventually(lambda: _gone(api, "jhub", "jupyter-alice"), "the pod to be deleted")
        eventually(
            lambda: not session.get(f"{url}/hub/api/users/alice").json()["servers"],
            "the hub to see the server stopped",
        )
        kept = core.read_namespaced_persistent_volume_claim("claim-alice", "jhub")
        assert kept.status.phase == "Bound"


@cluster_test
def test_stop_leaves_no_process_and_no_port(cluster_bin, tmp_path):
    from aglais_hub.testing.devcluster import DevCluster

    cluster = DevCluster(tmp_path / "dev", nodes=2, bin_dir=cluster_bin).start()
    try:
        with cluster.client() as api:
            core = _core(api)
            core.create_namespaced_pod("default", _web_pod("web"))
            pod = eventually(
                lambda: (
                    (p := core.read_namespaced_pod("web", "default")).status.pod_ip
                    and p.status.phase == "Running"
                    and p
                ),
                "a running pod",
            )
        eventually(lambda: _listening(pod.status.pod_ip, 8080), "the pod's server")
        pods = cluster.pod_processes()
        assert pods and sorted(cluster.agents) == ["node-1", "node-2"]
        children = [*cluster.agents.values(), cluster.provisioner, *cluster.control_plane.started]
        ports = dict(cluster.control_plane.ports)
    finally:
        left = cluster.stop()
    assert left == []
    assert all(process.returncode is not None for process in children)
    for pid in [*pods, *(process.pid for process in children)]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [name for name, port in ports.items() if _listening("127.0.0.1", port)]
    assert not _listening(pod.status.pod_ip, 8080)


# -- the parts, without a cluster -------------------------------------------------------------


class _ScriptedApi:
    """list_and_watch's view of an API server: two lists, and three watches that end,
    fail with 410 Gone, and deliver."""

    def __init__(self):
        self.lists = 0
        self.watched_from: list[str] = []

    async def get(self, path: str, **params: str) -> dict:
        self.lists += 1
        version = str(100 * self.lists)
        return {
            "metadata": {"resourceVersion": version},
            "items": [{"metadata": {"name": f"listed-{self.lists}", "resourceVersion": version}}],
        }

    async def watch(self, path: str, params: dict):  # noqa: ANN201
        import asyncio

        self.watched_from.append(params["resourceVersion"])
        call = len(self.watched_from)
        if call == 1:  # an event and a bookmark, then the server ends the watch
            yield "ADDED", {"metadata": {"name": "a", "resourceVersion": "101"}}
            yield "BOOKMARK", {"metadata": {"resourceVersion": "105"}}
        elif call == 2:  # the version was compacted meanwhile
            yield (
                "ERROR",
                {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version: 105 (150)",
                },
            )
        elif call == 3:
            yield "MODIFIED", {"metadata": {"name": "b", "resourceVersion": "201"}}
        else:
            await asyncio.Event().wait()


async def test_the_reflector_resumes_from_the_last_version_and_lists_again_on_410():
    import asyncio

    from aglais_hub.testing.nodeagent.client import list_and_watch

    api, seen = _ScriptedApi(), []

    async def handler(kind: str, obj: dict) -> None:
        seen.append((kind, obj["metadata"]["name"]))

    task = asyncio.ensure_future(list_and_watch(api, "/api/v1/pods", handler))
    for _ in range(100):
        if len(api.watched_from) >= 4:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert api.watched_from == ["100", "105", "200", "201"]
    assert api.lists == 2
    assert seen == [("ADDED", "listed-1"), ("ADDED", "a"), ("ADDED", "listed-2"), ("MODIFIED", "b")]


def test_pod_addresses_are_the_nodes_own_and_never_handed_out_twice():
    from aglais_hub.testing.nodeagent.agent import AddressPool

    pool = AddressPool(12)
    taken = [pool.take() for _ in range(600)]
    assert len(set(taken)) == 600
    assert all(a.startswith("127.12.") for a in taken)
    assert "127.12.0.1" not in taken  # the node's
    assert not [a for a in taken if a.endswith((".0", ".255"))]
    pool.give_back(taken[0])
    assert pool.take() != taken[0]  # not at once again
    assert pool.take(taken[0]) == taken[0]  # but when a pod had it already (agent restart)
    assert pool.take(taken[1]) != taken[1]  # in use


async def test_container_env_resolves_as_a_kubelet_does():
    from aglais_hub.testing.nodeagent.env import ConfigError, PodPlace, container_env
    from aglais_hub.testing.nodeagent.objects import PodObjects

    class Objects(PodObjects):
        def __init__(self):
            self.namespace = "ns"

        async def config_map(self, name: str) -> dict | None:
            return {"settings": {"mode": b"fast", "level": b"3"}}.get(name)

        async def secret(self, name: str) -> dict | None:
            return {"creds": {"password": b"s3cret"}}.get(name)

    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "reader"},
    }
    container = {
        "resources": {"requests": {"memory": "1Gi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
            },
            {
                "name": "MAYBE",
                "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
            {"name": "URL", "value": "http://$(POD_IP):80/$(CM_mode)/$(UNKNOWN)/$$(POD_IP)"},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {
                    "resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}
                },
            },
        ],
    }
    place = PodPlace("127.10.0.5", "127.10.0.1", "127.0.0.1", 6443, {"cpu": "8", "memory": "32Gi"})
    env = await container_env(pod, container, Objects(), place)
    assert (
        env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    )
    assert env["POD_IP"] == "127.10.0.5" and env["APP"] == "x" and env["SA"] == "reader"
    assert env["PASSWORD"] == "s3cret" and env["CM_level"] == "3"
    assert "MAYBE" not in env
    assert env["URL"] == "http://127.10.0.5:80/fast/$(UNKNOWN)/$(POD_IP)"
    assert env["CPUS"] == "8" and env["MEM_MI"] == "1024"  # limits default to allocatable
    container["env"] = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}
    ]
    with pytest.raises(ConfigError, match='secret "absent" not found'):
        await container_env(pod, container, Objects(), place)


def test_two_clusters_on_one_machine_never_share_pod_addresses():
    from aglais_hub.testing.devcluster import (
        ADDRESS_BLOCK,
        DevClusterError,
        claim_address_base,
        service_cidr,
    )

    first, held = claim_address_base(2)
    second, also_held = claim_address_base(2)
    try:
        assert second >= first + ADDRESS_BLOCK  # blocks do not overlap
    finally:
        also_held.close()
    again, held_again = claim_address_base(2)
    held_again.close()
    held.close()
    assert again != first  # still held: never handed out twice
    # the block's last /16 is its Services' range: one node fewer than the block
    with pytest.raises(DevClusterError, match="at most 15 nodes"):
        claim_address_base(ADDRESS_BLOCK)
    assert service_cidr(first) == f"127.{first + ADDRESS_BLOCK - 1}.0.0/16"

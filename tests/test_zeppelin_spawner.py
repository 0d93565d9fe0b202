"""ZeppelinSpawner end to end: a real hub, the real oidc-provider, the real auth proxy,
on the real Kubernetes control plane (aglais_hub.testing.devcluster: etcd, kube-apiserver,
controller-manager and scheduler from `make cluster-bin`; our node agents and volume
provisioner). The hub authenticates as the chart's hub ServiceAccount with the chart's
ClusterRole (aglais_hub.testing.hubaccount), so every test here also proves that role
sufficient; only the test itself looks at the cluster as its admin.

Zeppelin itself is not installed yet: its container runs the project's stand-in
(aglais_hub.testing.zeppelin_standin), which runs %pyspark paragraphs with real PySpark
whose executors are real pods, created with the pod's own service-account token.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import pytest
import yaml
from kubernetes.utils import parse_quantity

from aglais_hub.examples import EXAMPLES_DIR, example_files
from aglais_hub.flavours import JUPYTERLAB
from aglais_hub.sampledata import DEFAULT_ROWS
from aglais_hub.testing.devcluster import SAMPLE_CATALOGUE_MOUNT
from aglais_hub.testing.hubaccount import HubAccount, hub_rbac
from aglais_hub.testing.hubclient import HubClient, forms_of
from aglais_hub.testing.nodeagent.client import ApiError, Credentials, request_sync
from aglais_hub.testing.platform import Platform, demo_values
from aglais_hub.testing.rawapi import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.controlplane]

SPAWNER = {
    "kind": "zeppelin",
    "startTimeout": 90,
    "kubernetes": {
        "zeppelinImage": "ghcr.io/aglais/zeppelin:test",
        "sparkImage": "ghcr.io/aglais/spark:3.5.9",
    },
}


def with_image(tag: str) -> dict:
    """SPAWNER with the notebook image's ``tag`` (the node agent's test images)."""
    return {
        **SPAWNER,
        "kubernetes": {**SPAWNER["kubernetes"], "zeppelinImage": f"ghcr.io/aglais/zeppelin:{tag}"},
    }


@contextmanager
def platform_with(kubeconfig: Path, directory: Path, **sections):
    """The platform (demo values with SPAWNER, updated by ``sections``) in ``directory``,
    on the cluster ``kubeconfig`` names, as that kubeconfig's identity."""
    platform = Platform(
        directory,
        demo_values(**{"spawner": SPAWNER, **sections}),
        env={"KUBECONFIG": str(kubeconfig)},
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


API_PREFIX = {
    "roles": "/apis/rbac.authorization.k8s.io/v1",
    "rolebindings": "/apis/rbac.authorization.k8s.io/v1",
    "networkpolicies": "/apis/networking.k8s.io/v1",
}


class Kube:
    """The cluster as its admin sees it, as plain manifests (only the tests look with it;
    the hub is the chart's ServiceAccount)."""

    def __init__(self, dev):
        self.dev = dev
        self.admin = Credentials.from_kubeconfig(dev.kubeconfig)

    def call(self, method: str, path: str, body: object = None) -> dict:
        return request_sync(self.admin, method, path, body)

    def path(self, kind: str, namespace: str, name: str = "") -> str:
        path = f"{API_PREFIX.get(kind, '/api/v1')}/namespaces/{namespace}/{kind}"
        return f"{path}/{name}" if name else path

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self.call("GET", self.path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, selector: str = "") -> list[dict]:
        query = f"?labelSelector={selector}" if selector else ""
        return self.call("GET", self.path(kind, namespace) + query)["items"]

    def user_namespaces(self) -> list[str]:
        listed = self.call("GET", "/api/v1/namespaces")["items"]
        return [
            n["metadata"]["name"] for n in listed if n["metadata"]["name"].startswith("aglais-")
        ]

    def delete_user_namespaces(self, timeout: float = 120) -> None:
        """A clean slate for the next test: the namespace controller deletes each user's
        pods (the node agents stop their processes), claims and volumes."""
        for name in self.user_namespaces():
            try:
                self.call("DELETE", f"/api/v1/namespaces/{name}")
            except ApiError as error:
                if error.status != 404:
                    raise
        wait_for(
            lambda: not self.user_namespaces(),
            timeout=timeout,
            what="the users' namespaces to be deleted",
        )


@pytest.fixture(scope="module")
def dev(cluster_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two roomy nodes (a large size's executors need 4 GiB each), for this module."""
    from aglais_hub.testing.devcluster import DevCluster

    with DevCluster(
        tmp_path_factory.mktemp("devcluster"),
        nodes=2,
        node_cpu="16",
        node_memory="64Gi",
        bin_dir=cluster_bin,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def hub_kubeconfig(dev, tmp_path_factory) -> Path:
    """A token for the chart's hub ServiceAccount, with the chart's ClusterRole."""
    return HubAccount(dev, tmp_path_factory.mktemp("hub-account")).create(hub_rbac())


@pytest.fixture
def cluster(dev):
    """The module's cluster, with no user namespace left from an earlier test; after the
    test none of its pods' processes may outlive the namespaces' deletion."""
    kube = Kube(dev)
    kube.delete_user_namespaces()
    yield kube
    kube.delete_user_namespaces()
    wait_for(
        lambda: not dev.pod_processes(),
        timeout=30,
        what="no pod process left after the namespaces went",
    )


@contextmanager
def running_platform(cluster: Kube, directory: Path, kubeconfig: Path | None = None, **sections):
    """The platform (demo values with SPAWNER, updated by ``sections``) on the cluster, as
    the chart's hub ServiceAccount (``kubeconfig``: another identity or route to it)."""
    if kubeconfig is None:
        kubeconfig = HubAccount(cluster.dev, directory / "account").create(hub_rbac())
    with platform_with(kubeconfig, directory / "platform", **sections) as platform:
        yield platform


@pytest.fixture
def platform_on_cluster(cluster, hub_kubeconfig, tmp_path):
    with running_platform(cluster, tmp_path, hub_kubeconfig) as platform:
        yield platform


def get(cluster: Kube, kind: str, namespace: str, name: str) -> dict | None:
    return cluster.get(kind, namespace, name)


def quantity(value: object) -> int:
    """A Kubernetes quantity as a number (the API server writes 2**30 as "1Gi")."""
    return int(parse_quantity(str(value)))


KIND_PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ResourceQuota": "resourcequotas",
    "NetworkPolicy": "networkpolicies",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
    "Pod": "pods",
    "Service": "services",
}
POD_UID_PLACEHOLDER = "<the pod's uid, given by the API server>"


def differences(rendered: object, live: object, path: str = "") -> list[str]:
    """Where ``live`` (an object as the API server holds it) differs from ``rendered``
    (render-pod's): every rendered field must be there with the same value. The API server
    adds defaults (more keys, list items appended, e.g. the service-account token volume)
    and writes quantities its own way ("4Gi" for 4294967296); a container's ``env`` is
    compared by name, as the hub adds its own per-spawn variables."""
    if isinstance(rendered, dict) and isinstance(live, dict):
        found = []
        for key, value in rendered.items():
            if key not in live:
                found.append(f"{path}.{key}: missing")
            elif key == "env" and isinstance(value, list):
                have = {e["name"]: e for e in live[key]}
                for entry in value:
                    if entry["name"] not in have:
                        found.append(f"{path}.env.{entry['name']}: missing")
                    elif "<made by the hub" not in str(entry.get("value")):
                        found += differences(
                            entry, have[entry["name"]], f"{path}.env.{entry['name']}"
                        )
            else:
                found += differences(value, live[key], f"{path}.{key}")
        return found
    if isinstance(rendered, list) and isinstance(live, list):
        if len(live) < len(rendered):
            return [f"{path}: {len(rendered)} items rendered, {len(live)} live"]
        return [
            d for i, item in enumerate(rendered) for d in differences(item, live[i], f"{path}[{i}]")
        ]
    if rendered == live:
        return []
    if any(part in path for part in ("resources", "hard")):
        try:
            if quantity(rendered) == quantity(live):
                return []
        except ValueError:
            pass
    return [f"{path}: rendered {rendered!r}, live {live!r}"]


def assert_render_pod_is_the_spawn(
    cluster: Kube, platform: Platform, user: str, groups: str, server: str = "", *options: str
) -> None:
    """``aglais-hub render-pod`` for this user and server prints exactly the objects the
    spawn made: each one exists on the cluster with every rendered field, and the spawn
    made no object of those kinds in the user's namespace that the dry run does not show."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aglais_hub.cli",
            "render-pod",
            str(platform.values_file),
            "--user",
            user,
            "--groups",
            groups,
            "--server",
            server,
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(rendered) == len(KIND_PLURALS), [d["kind"] for d in rendered]
    namespace = next(d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace")
    pod_name = next(d["metadata"]["name"] for d in rendered if d["kind"] == "Pod")
    pod_uid = get(cluster, "pods", namespace, pod_name)["metadata"]["uid"]
    problems = []
    for obj in rendered:
        kind, name = obj["kind"], obj["metadata"]["name"]
        for owner in obj["metadata"].get("ownerReferences", []):
            assert owner["uid"] == POD_UID_PLACEHOLDER
            owner["uid"] = pod_uid
        if kind == "Namespace":
            live = cluster.call("GET", f"/api/v1/namespaces/{name}")
        else:
            live = get(cluster, KIND_PLURALS[kind], namespace, name)
        if live is None:
            problems.append(f"{kind}/{name}: rendered, not created")
        else:
            problems += [f"{kind}/{name}{d}" for d in differences(obj, live)]
    # and nothing the spawn made for this server is missing from the dry run
    shown = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    server_label = server or "default"
    for kind, plural in KIND_PLURALS.items():
        if kind == "Namespace":
            continue
        for live in cluster.list(plural, namespace, f"aglais.io/user={user}"):
            labels = live["metadata"]["labels"]
            if labels.get("aglais.io/server", server_label) != server_label:
                continue  # another server's
            if (kind, live["metadata"]["name"]) not in shown:
                problems.append(f"{kind}/{live['metadata']['name']}: created, not rendered")
    assert not problems, "\n".join(problems)


# A spawn on this cluster takes seconds, and the hub waits for slow_spawn_timeout (10 s)
# before it answers the spawn form: to see the steps, this hub answers at once.
AT_ONCE = {"config": {"JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}}}}


def test_alice_gets_her_own_namespace_pod_and_claim_behind_the_auth_proxy(
    cluster, hub_kubeconfig, tmp_path
):
    with running_platform(cluster, tmp_path, hub_kubeconfig, hub=AT_ONCE) as platform:
        alice_gets_her_server(cluster, platform)


def alice_gets_her_server(cluster: Kube, platform: Platform) -> None:
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    event = alice.start_server(timeout=120)
    assert event.get("ready"), (event, platform.log_tail())
    steps = " | ".join(e.get("message", "") for e in event["events"])
    for step in ("Preparing your namespace, volume and Spark settings", "Server ready at"):
        assert step in steps, steps
    # the pod's own events (the scheduler's, the node agent's) are there for the progress
    # stream to translate; this pod was Ready within the stream's one-second poll
    reasons = {
        e["reason"]
        for e in cluster.list("events", "aglais-alice")
        if e["involvedObject"]["name"] == "zeppelin-alice"
    }
    assert {"Scheduled", "Pulled", "Started"} <= reasons, reasons

    ns = "aglais-alice"
    for kind, name in [
        ("serviceaccounts", "spark-driver"),
        ("resourcequotas", "tier-quota"),
        ("persistentvolumeclaims", "claim-alice"),
    ]:
        assert get(cluster, kind, ns, name), f"{kind}/{name} missing"
    assert get(cluster, "roles", ns, "spark-driver")
    assert get(cluster, "rolebindings", ns, "spark-driver")
    assert get(cluster, "networkpolicies", ns, "aglais-user")  # stored, not enforced here
    assert get(cluster, "persistentvolumeclaims", ns, "claim-alice")["status"]["phase"] == "Bound"
    pod = get(cluster, "pods", ns, "zeppelin-alice")
    assert pod["status"]["phase"] == "Running"
    uid = pod["metadata"]["uid"]
    for kind, name in [
        ("services", "zeppelin-alice-driver"),
        ("configmaps", "zeppelin-alice-spark"),
    ]:
        obj = get(cluster, kind, ns, name)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid, kind
    # the admins' dry run shows what this spawn made
    assert_render_pod_is_the_spawn(cluster, platform, "alice", "users")
    quota = get(cluster, "resourcequotas", ns, "tier-quota")
    assert quantity(quota["spec"]["hard"]["requests.storage"]) == 10 * 2**30  # standard
    # the resource-quota controller accounts for what runs in the namespace
    wait_for(
        lambda: (
            quantity(
                (get(cluster, "resourcequotas", ns, "tier-quota")["status"].get("used") or {}).get(
                    "pods", 0
                )
            )
            >= 1
        ),
        what="the quota's usage to count the pod",
    )

    # through the hub's proxy to the auth proxy, which logs alice in with hub OAuth,
    # and on to Zeppelin (its stand-in) once that answers
    version = wait_for(
        lambda: (r := alice.get("user/alice/api/version")).status_code == 200 and r.json(),
        timeout=60,
        what="Zeppelin to answer",
    )
    assert version["body"]["version"].startswith("0.12.")
    health = alice.get("user/alice/_aglais/health").json()
    assert health == {"proxy": "ok", "zeppelin": "up"}
    usage = alice.get("user/alice/_aglais/usage").json()
    assert usage["quota_bytes"] == 10 * 2**30

    # bob may not enter alice's server; an admin (access:servers) may, after consenting
    bob = HubClient(platform.url)
    bob.login("bob", "bob")
    assert bob.get("user/alice/_aglais/usage").status_code == 403
    admin = HubClient(platform.url)
    admin.login("admin", "admin")
    seen = admin.get_with_consent("user/alice/_aglais/usage")
    assert seen.status_code == 200 and seen.json()["quota_bytes"] == 10 * 2**30

    # stopping removes the pod, its service and its Spark config; the claim stays
    response = alice.session.delete(
        alice.url("hub/api/users/alice/server"), headers=alice.xsrf_headers()
    )
    assert response.status_code in (202, 204)
    wait_for(
        lambda: get(cluster, "pods", ns, "zeppelin-alice") is None, timeout=60, what="the pod to go"
    )
    wait_for(
        lambda: (
            get(cluster, "services", ns, "zeppelin-alice-driver") is None
            and get(cluster, "configmaps", ns, "zeppelin-alice-spark") is None
        ),
        what="the service and config map to go",
    )
    assert get(cluster, "persistentvolumeclaims", ns, "claim-alice")


def test_a_size_above_the_tier_is_refused_with_a_message(cluster, platform_on_cluster):
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    refusal = "needs tier 'Power' or higher; your tier is 'Standard'"
    # the API answers 4xx with the reason
    response = alice.session.post(
        alice.url("hub/api/users/alice/servers/big"),
        json={"profile": "large"},
        headers=alice.xsrf_headers(),
    )
    assert response.status_code == 403, response.text
    assert refusal in response.json()["message"]
    # the spawn form says it too
    page = alice.get("hub/spawn/alice/big2")
    form = next(f for f in forms_of(page.text) if "spawn" in f["action"])
    answer = alice.session.post(
        urljoin(page.url, form["action"]),  # carries the _xsrf
        data={**form["fields"], "profile": "large"},
    )
    assert answer.status_code == 403, (answer.url, answer.text[-3000:])
    assert refusal.replace("'", "&#39;") in answer.text
    assert get(cluster, "pods", "aglais-alice", "zeppelin-alice--big") is None


SUM_NOTE = {
    "name": "gaia-sum",
    "paragraphs": [
        {"text": "%pyspark\nprint(spark.range(10**6).selectExpr('sum(id)').collect()[0][0])"}
    ],
}


def executors(cluster, namespace: str) -> list[dict]:
    return cluster.list("pods", namespace, "spark-role=executor")


def test_a_note_runs_pyspark_on_executor_pods_in_her_namespace(cluster, platform_on_cluster):
    """The note runs in the Zeppelin stand-in (real PySpark) behind the real auth proxy."""
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    assert alice.start_server(timeout=120).get("ready")
    wait_for(
        lambda: alice.get("user/alice/api/version").status_code == 200,
        timeout=60,
        what="Zeppelin to answer",
    )
    note_id = alice.session.post(
        alice.url("user/alice/api/notebook"), json=SUM_NOTE, timeout=60
    ).json()["body"]
    note = alice.get(f"user/alice/api/notebook/{note_id}").json()["body"]
    paragraph = note["paragraphs"][0]["id"]
    result = alice.session.post(
        alice.url(f"user/alice/api/notebook/run/{note_id}/{paragraph}"), timeout=300
    ).json()["body"]
    assert result["code"] == "SUCCESS", result
    assert result["msg"][0]["data"].strip() == "499999500000"

    driver = get(cluster, "pods", "aglais-alice", "zeppelin-alice")
    running = executors(cluster, "aglais-alice")
    assert running, "the paragraph ran without executor pods"
    for pod in running:
        assert pod["metadata"]["name"].startswith("zeppelin-alice-exec-")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == driver["metadata"]["uid"]
        assert pod["metadata"]["labels"]["aglais.io/user"] == "alice"  # from the pod template

    # stop: the pod and its executors go; the note stays on her volume
    alice.session.delete(alice.url("hub/api/users/alice/server"), headers=alice.xsrf_headers())
    wait_for(
        lambda: (
            not executors(cluster, "aglais-alice")
            and get(cluster, "pods", "aglais-alice", "zeppelin-alice") is None
        ),
        timeout=60,
        what="the pod and its executors to go",
    )
    alice.wait_stopped("alice")
    assert alice.start_server(timeout=120).get("ready")
    wait_for(lambda: alice.get("user/alice/api/version").status_code == 200, timeout=60)
    notes = alice.get("user/alice/api/notebook").json()["body"]
    assert {"id": note_id, "name": "gaia-sum"} in notes


def claim_size(cluster, user: str) -> int:
    return quantity(
        get(cluster, "persistentvolumeclaims", f"aglais-{user}", f"claim-{user}")["spec"][
            "resources"
        ]["requests"]["storage"]
    )


def test_claims_grow_with_the_tier_and_never_shrink(cluster, platform_on_cluster):
    platform = platform_on_cluster
    platform.set_user("dana", ["users"])
    dana = HubClient(platform.url)
    dana.login("dana", "dana")

    def cycle():
        assert dana.start_server(timeout=120).get("ready")
        dana.session.delete(dana.url("hub/api/users/dana/server"), headers=dana.xsrf_headers())
        dana.wait_stopped("dana")

    cycle()
    assert claim_size(cluster, "dana") == 10 * 2**30  # standard
    platform.set_user("dana", ["users", "power"])  # promoted: read again before the spawn
    cycle()
    assert claim_size(cluster, "dana") == 50 * 2**30  # power
    # our provisioner grew the volume: the claim's status says so, and so does its PV
    wait_for(
        lambda: (
            quantity(
                get(cluster, "persistentvolumeclaims", "aglais-dana", "claim-dana")["status"][
                    "capacity"
                ]["storage"]
            )
            == 50 * 2**30
        ),
        what="the claim to grow",
    )
    volume = get(cluster, "persistentvolumeclaims", "aglais-dana", "claim-dana")["spec"][
        "volumeName"
    ]
    pv = cluster.call("GET", f"/api/v1/persistentvolumes/{volume}")
    assert quantity(pv["spec"]["capacity"]["storage"]) == 50 * 2**30
    platform.set_user("dana", ["users"])  # demoted: the claim keeps its size
    cycle()
    assert claim_size(cluster, "dana") == 50 * 2**30
    assert "volumes never shrink" in platform.log_file.read_text()


def test_a_server_over_the_namespace_quota_fails_fast_naming_the_limit(cluster, tmp_path):
    sizes = {"huge-driver": {"displayName": "Huge driver", "executors": 0, "driverMemory": "16Gi"}}
    with running_platform(cluster, tmp_path, sizes=sizes) as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        event = alice.start_server(profile="huge-driver", timeout=60)
        assert event.get("failed"), event
        assert "does not fit in your tier's quota" in event["message"]
        assert "exceeded quota: tier-quota" in event["message"]
        assert "requests.memory" in event["message"]
        assert get(cluster, "pods", "aglais-alice", "zeppelin-alice") is None
        assert get(cluster, "configmaps", "aglais-alice", "zeppelin-alice-spark") is None


def test_two_named_servers_with_different_sizes_run_at_once(cluster, platform_on_cluster):
    platform = platform_on_cluster
    bob = HubClient(platform.url)
    bob.login("bob", "bob")  # power tier: three servers at once
    assert bob.start_server("explore", profile="small", timeout=120).get("ready")
    assert bob.start_server("bigjoin", profile="large", timeout=120).get("ready")
    ns = "aglais-bob"
    explore = get(cluster, "configmaps", ns, "zeppelin-bob--explore-spark")
    bigjoin = get(cluster, "configmaps", ns, "zeppelin-bob--bigjoin-spark")
    assert "spark.dynamicAllocation.maxExecutors 2\n" in explore["data"]["spark-defaults.conf"]
    assert "spark.dynamicAllocation.maxExecutors 8\n" in bigjoin["data"]["spark-defaults.conf"]
    pods = {
        name: get(cluster, "pods", ns, f"zeppelin-bob--{name}") for name in ("explore", "bigjoin")
    }
    assert pods["explore"]["status"]["podIP"] != pods["bigjoin"]["status"]["podIP"]
    driver_memory = {
        n: p["spec"]["containers"][1]["resources"]["limits"]["memory"] for n, p in pods.items()
    }
    # the sizes' driver heaps with Spark's overhead: 1 GiB + 384 MiB, 4 GiB + 409 MiB
    assert {n: quantity(m) for n, m in driver_memory.items()} == {
        "explore": 2**30 + 384 * 2**20,
        "bigjoin": 4 * 2**30 + 409 * 2**20,
    }
    # both share bob's one claim
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for p in pods.values()
        for v in p["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"claim-bob"}
    # each server runs its own Spark, with its own executors
    for name in ("explore", "bigjoin"):
        wait_for(
            lambda n=name: bob.get(f"user/bob/{n}/api/version").status_code == 200,
            timeout=60,
            what=f"{name} to answer",
        )
        note_id = bob.session.post(
            bob.url(f"user/bob/{name}/api/notebook"), json=SUM_NOTE, timeout=60
        ).json()["body"]
        note = bob.get(f"user/bob/{name}/api/notebook/{note_id}").json()["body"]
        run = f"user/bob/{name}/api/notebook/run/{note_id}/{note['paragraphs'][0]['id']}"
        result = bob.session.post(bob.url(run), timeout=300).json()["body"]
        assert result["msg"][0]["data"].strip() == "499999500000", result
    owners = {}
    for pod in executors(cluster, ns):
        owners.setdefault(pod["metadata"]["ownerReferences"][0]["name"], []).append(
            pod["metadata"]["name"]
        )
    assert sorted(owners) == ["zeppelin-bob--bigjoin", "zeppelin-bob--explore"]
    for server, names in owners.items():
        assert all(n.startswith(f"{server}-exec-") for n in names)


def server_activity(platform) -> str:
    admin = HubClient(platform.url)
    admin.login("admin", "admin")
    return admin.get("hub/api/users/alice").json()["servers"][""]["last_activity"]


def test_activity_is_real_and_disk_usage_counts_the_files(cluster, tmp_path):
    spawner = {**SPAWNER, "kubernetes": {**SPAWNER["kubernetes"], "activityInterval": 1}}
    with running_platform(cluster, tmp_path, spawner=spawner) as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        assert alice.start_server(timeout=120).get("ready")
        wait_for(lambda: alice.get("user/alice/api/version").status_code == 200, timeout=60)
        time.sleep(2.5)  # the report of that request has reached the hub
        idle = server_activity(platform)
        time.sleep(3)  # several report intervals with no use
        assert server_activity(platform) == idle, "an idle server must not look active"
        alice.get("user/alice/api/notebook")
        wait_for(
            lambda: server_activity(platform) > idle, timeout=10, what="activity to be reported"
        )

        before = alice.get("user/alice/_aglais/usage").json()["used_bytes"]
        note = {
            "name": "write",
            "paragraphs": [
                {
                    "text": "%python\nimport os\n"
                    "open(os.path.join(os.environ['HOME'], 'one-mib.bin'), 'wb')"
                    ".write(os.urandom(2**20))"
                }
            ],
        }
        note_id = alice.session.post(alice.url("user/alice/api/notebook"), json=note).json()["body"]
        paragraph = alice.get(f"user/alice/api/notebook/{note_id}").json()["body"]["paragraphs"][0]
        result = alice.session.post(
            alice.url(f"user/alice/api/notebook/run/{note_id}/{paragraph['id']}")
        ).json()["body"]
        assert result["code"] == "SUCCESS", result
        after = alice.get("user/alice/_aglais/usage").json()["used_bytes"]
        assert 2**20 <= after - before <= 2**20 + 64 * 2**10

        # a running Spark job keeps the server active with no request at all. Spark starts
        # first (driver and executor pods), so the quiet window below measures the job alone.
        warm = {"name": "warm", "paragraphs": [{"text": "%pyspark\nspark.range(4).count()"}]}
        warm_id = alice.session.post(alice.url("user/alice/api/notebook"), json=warm).json()["body"]
        warm_paragraph = alice.get(f"user/alice/api/notebook/{warm_id}").json()["body"]
        warm_run = alice.session.post(
            alice.url(
                f"user/alice/api/notebook/run/{warm_id}/{warm_paragraph['paragraphs'][0]['id']}"
            )
        ).json()["body"]
        assert warm_run["code"] == "SUCCESS", warm_run
        slow = {
            "name": "slow",
            "paragraphs": [
                {
                    "text": "%pyspark\nimport time\n"
                    "spark.sparkContext.parallelize(range(2), 2).foreach(lambda x: time.sleep(20))"
                }
            ],
        }
        slow_id = alice.session.post(alice.url("user/alice/api/notebook"), json=slow).json()["body"]
        alice.session.post(alice.url(f"user/alice/api/notebook/job/{slow_id}"))
        time.sleep(4)  # the job is submitted; from now on alice sends nothing
        quiet_since = server_activity(platform)
        wait_for(
            lambda: server_activity(platform) > quiet_since,
            timeout=14,
            what="the running job to count as activity",
        )


def leftovers(cluster, namespace: str) -> list[str]:
    found = []
    for kind in ("pods", "services", "configmaps"):
        found += [
            f"{kind}/{i['metadata']['name']}"
            for i in cluster.list(kind, namespace)
            if i["metadata"]["name"] != "kube-root-ca.crt"
        ]
    return found


def wait_nothing_left(cluster, namespace: str = "aglais-alice", timeout: float = 60) -> None:
    """Until no pod, Service or ConfigMap of a spawn is left (what is, in the failure)."""
    deadline = time.monotonic() + timeout
    while left := leftovers(cluster, namespace):
        assert time.monotonic() < deadline, f"left behind after {timeout} s: {left}"
        time.sleep(0.2)


@pytest.fixture
def fault_platform(dev, cluster, hub_kubeconfig, tmp_path):
    """A platform whose hub reaches the API server through the fault proxy (as the chart's
    ServiceAccount still: the proxy passes its token on) and whose API retries give up
    after 5 s."""
    retry = {"config": {"ZeppelinSpawner": {"k8s_api_request_retry_timeout": 5}}}
    faulty = dev.through_faults(hub_kubeconfig, tmp_path / "faulty.kubeconfig")
    dev.faults.clear()
    try:
        with running_platform(cluster, tmp_path, faulty, hub=retry) as platform:
            yield platform
    finally:
        dev.faults.clear()


def test_api_errors_during_a_spawn_are_retried(dev, fault_platform):
    pods = dev.faults.add("create", "pods", 500, count=2)
    maps = dev.faults.add("create", "configmaps", 429, count=1, retry_after=1)
    alice = HubClient(fault_platform.url)
    alice.login("alice", "alice")
    assert alice.start_server(timeout=120).get("ready")
    assert (dev.faults.fired(pods), dev.faults.fired(maps)) == (2, 1)
    assert alice.get("user/alice/_aglais/health").status_code == 200


def test_a_spawn_the_api_keeps_refusing_fails_clearly_and_leaves_nothing(
    dev, cluster, fault_platform
):
    dev.faults.add("create", "pods", 503, count=None)
    alice = HubClient(fault_platform.url)
    alice.login("alice", "alice")
    event = alice.start_server(timeout=120)
    assert event.get("failed")
    assert "The cluster kept refusing to start your server (503" in event["message"]
    dev.faults.clear()
    wait_nothing_left(cluster)


def test_an_api_server_restart_during_a_spawn_ends_running_or_clearly_with_no_orphan(
    dev, cluster, fault_platform
):
    # the pod's create is held long enough for the API server to go away under it
    dev.faults.add("create", "pods", delay=2, count=1)
    alice = HubClient(fault_platform.url)
    alice.login("alice", "alice")
    with ThreadPoolExecutor(1) as pool:
        spawning = pool.submit(alice.start_server, timeout=150)
        wait_for(
            lambda: dev.faults.rules()[0]["fired"] == 1,
            timeout=30,
            what="the spawn to reach the pod's create",
        )
        dev.restart_apiserver(down=3)
        event = spawning.result()
    if event.get("ready"):
        pod = get(cluster, "pods", "aglais-alice", "zeppelin-alice")
        assert pod["status"]["phase"] == "Running"
        wait_for(
            lambda: alice.get("user/alice/_aglais/health").status_code == 200,
            timeout=60,
            what="her server to answer",
        )
    else:
        message = event["message"]
        assert "Traceback" not in message and "HTTP response headers" not in message, message
        alice.wait_stopped("alice")
        wait_nothing_left(cluster)
    # the restarted API server has kept her namespace (etcd's data) and answers
    assert cluster.call("GET", "/api/v1/namespaces/aglais-alice")["status"]["phase"] == "Active"


def test_a_clean_up_the_api_server_outlasts_goes_on_in_the_background(
    dev, cluster, hub_kubeconfig, tmp_path
):
    """The API server goes away mid-spawn for longer than the clean-up waits: the user is
    told at once, and what the spawn had made goes once the API server is back."""
    patient = {
        "config": {"ZeppelinSpawner": {"k8s_api_request_retry_timeout": 3, "cleanup_timeout": 3}}
    }
    faulty = dev.through_faults(hub_kubeconfig, tmp_path / "faulty.kubeconfig")
    dev.faults.clear()
    with running_platform(cluster, tmp_path, faulty, hub=patient) as platform:
        rule = dev.faults.add("create", "pods", delay=2, count=1)
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        with ThreadPoolExecutor(1) as pool:
            spawning = pool.submit(alice.start_server, timeout=120)
            wait_for(
                lambda: dev.faults.fired(rule) == 1,
                timeout=30,
                what="the spawn to reach the pod's create",
            )
            dev.control_plane.stop_component("kube-apiserver")
            try:
                event = spawning.result()
            finally:
                dev.control_plane.start_component("kube-apiserver")
        assert event.get("failed"), event
        assert "The cluster kept refusing to start your server" in event["message"]
        assert "retrying in the background" in platform.log_file.read_text()
        wait_nothing_left(cluster)
        wait_for(
            lambda: "Cleaned up after the failed spawn of alice" in platform.log_file.read_text(),
            what="the clean-up to say it is done",
        )
        # and the next spawn starts her server
        assert alice.start_server(timeout=120).get("ready")


def test_a_pod_whose_image_cannot_be_pulled_fails_fast_and_is_removed(cluster, tmp_path):
    """The node agent cannot pull images tagged `unpullable` (ErrImagePull, as a kubelet)."""
    with running_platform(cluster, tmp_path, spawner=with_image("unpullable")) as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        started = time.monotonic()
        event = alice.start_server(timeout=120)
        assert event.get("failed"), event
        assert time.monotonic() - started < 30, "must not wait for the whole start timeout"
        assert "Your server cannot start: its image cannot be pulled" in event["message"]
        assert "ErrImagePull" in event["message"] or "ImagePullBackOff" in event["message"]
        wait_nothing_left(cluster)


def test_servers_survive_a_hub_restart_and_can_still_be_stopped(cluster, platform_on_cluster):
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    assert alice.start_server(timeout=120).get("ready")
    wait_for(lambda: alice.get("user/alice/api/version").status_code == 200, timeout=60)
    uid = get(cluster, "pods", "aglais-alice", "zeppelin-alice")["metadata"]["uid"]
    platform.stop()
    platform.start()
    # the same pod, still reachable through the restarted hub with the same login
    assert get(cluster, "pods", "aglais-alice", "zeppelin-alice")["metadata"]["uid"] == uid
    assert alice.get("user/alice/api/version").status_code == 200
    response = alice.session.delete(
        alice.url("hub/api/users/alice/server"), headers=alice.xsrf_headers()
    )
    assert response.status_code in (202, 204)
    wait_for(
        lambda: get(cluster, "pods", "aglais-alice", "zeppelin-alice") is None,
        timeout=60,
        what="the pod to go",
    )


# the catalogues on a csi volume: the node agents serve a csi share from their shared
# directory (aglais_hub.testing.nodeagent.volumes), the same for the pod and executors
CATALOGUE_NOTE = {
    "name": "catalogue",
    "paragraphs": [
        {
            "text": "%pyspark\nimport os\n"
            "where = os.environ['AGLAIS_CATALOGUES']\n"
            "gaia = spark.read.parquet(os.path.join(where, 'gaia_source'))\n"
            "print(where, gaia.count(), gaia.rdd.getNumPartitions() > 1)"
        }
    ],
}


def test_her_notes_read_the_catalogues_from_the_data_volume_on_executors(cluster, tmp_path):
    volume = cluster.dev.share_sample_catalogue()
    share = cluster.dev.sample_catalogue_dir
    spawner = {
        **SPAWNER,
        "catalogues": SAMPLE_CATALOGUE_MOUNT,
        "kubernetes": {**SPAWNER["kubernetes"], "dataVolumes": [volume]},
    }
    with running_platform(cluster, tmp_path, spawner=spawner) as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        assert alice.start_server(timeout=120).get("ready")
        wait_for(lambda: alice.get("user/alice/api/version").status_code == 200, timeout=60)
        note_id = alice.session.post(
            alice.url("user/alice/api/notebook"), json=CATALOGUE_NOTE, timeout=60
        ).json()["body"]
        paragraph = alice.get(f"user/alice/api/notebook/{note_id}").json()["body"]
        result = alice.session.post(
            alice.url(f"user/alice/api/notebook/run/{note_id}/{paragraph['paragraphs'][0]['id']}"),
            timeout=300,
        ).json()["body"]
        assert result["code"] == "SUCCESS", result
        # /data/gaia as the node agent runs the pod: its processes see the volume's host
        # directory where a container sees the mount path (it has no mount namespace)
        assert result["msg"][0]["data"].split() == [str(share), str(DEFAULT_ROWS), "True"]
        assert executors(cluster, "aglais-alice"), "the count ran without executor pods"


def test_the_jupyterlab_flavour_runs_behind_the_same_auth_proxy(cluster, platform_on_cluster):
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    assert alice.start_server("lab", profile="lab", timeout=120).get("ready")
    pod = get(cluster, "pods", "aglais-alice", "zeppelin-alice--lab")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["auth-proxy", "jupyterlab"]
    status = wait_for(
        lambda: (r := alice.get("user/alice/lab/api/status")).status_code == 200 and r.json(),
        timeout=60,
        what="JupyterLab to answer",
    )
    assert "started" in status
    # a kernel runs code over its WebSocket, which the auth proxy carries like Zeppelin's
    assert alice.run_code("user/alice/lab/", "print(6 * 7)").strip() == "42"
    # the pod's init container copied the examples into her notebook folder
    shipped = sorted(example_files(EXAMPLES_DIR, JUPYTERLAB.examples))
    assert shipped
    listing = alice.get("user/alice/lab/api/contents/Examples").json()["content"]
    assert sorted(item["name"] for item in listing) == shipped
    bob = HubClient(platform.url)
    bob.login("bob", "bob")
    assert bob.get("user/alice/lab/api/status").status_code == 403


def test_the_auth_proxy_shows_a_starting_page_while_zeppelin_boots(cluster, tmp_path):
    """The node agent's `slow` notebook image starts Zeppelin 6 s late, as its JVM does."""
    with running_platform(cluster, tmp_path, spawner=with_image("slow")) as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        # the hub's own check passes while Zeppelin boots, so the spawn completes
        assert alice.start_server(timeout=120).get("ready")
        page = alice.get("user/alice/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "Zeppelin is starting" in page.text
        api = alice.get("user/alice/api/notebook")
        assert api.status_code == 503 and api.headers["Retry-After"] == "3"
        assert alice.get("user/alice/_aglais/health").json()["zeppelin"] == "starting"
        wait_for(
            lambda: alice.get("user/alice/api/version").status_code == 200,
            timeout=30,
            what="Zeppelin to finish booting",
        )
        assert alice.get("user/alice/_aglais/health").json()["zeppelin"] == "up"


def test_a_booked_server_gets_the_booked_size_on_the_cluster(cluster, platform_on_cluster):
    """An admin books the large size for alice (above her tier): her r<id> server runs
    with the booked driver and executors, and her namespace's quota makes room for it.
    As the booking ends soon, the auth proxy puts its notice bar into Zeppelin's page."""
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")  # the hub knows her from her first login
    admin = HubClient(platform.url)
    admin.login("admin", "admin")
    token = admin.new_token()
    now = time.time()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    # ten minutes: inside the warning window (warnMinutes, 15 by default)
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 600))
    response = admin.session.post(
        platform.reservations_url + "api/reservations",
        json={
            "size": "large",
            "start": start,
            "end": end,
            "title": "Full-sky join",
            "user": "alice",
        },
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    server = response.json()["server_name"]

    event = alice.start_server(server, timeout=120)
    assert event.get("ready"), (event, platform.log_tail())
    applied = alice.get("hub/api/users/alice").json()["servers"][server]["user_options"]["applied"]
    assert (applied["executors"], applied["executor_cores"], applied["driver_memory"]) == (
        8,
        2,
        4 * 2**30,
    )
    ns, pod_name = "aglais-alice", f"zeppelin-alice--{server}"
    pod = get(cluster, "pods", ns, pod_name)
    limit = quantity(pod["spec"]["containers"][1]["resources"]["limits"]["memory"])
    assert limit == 4 * 2**30 + 409 * 2**20  # the booked 4 GiB driver and Spark's overhead
    # the dry run of a booking of this size shows what this spawn made
    assert_render_pod_is_the_spawn(cluster, platform, "alice", "users", server, "--booked", "large")
    conf = get(cluster, "configmaps", ns, f"{pod_name}-spark")["data"]["spark-defaults.conf"]
    assert "spark.dynamicAllocation.maxExecutors 8\n" in conf
    assert "spark.executor.cores 2\n" in conf and "spark.executor.memory 4096m\n" in conf
    quota = get(cluster, "resourcequotas", ns, "tier-quota")["spec"]["hard"]
    assert int(quota["pods"]) >= 1 + 8  # room for the booked executors
    # the end is near: the auth proxy's notice, and its script in Zeppelin's page
    notice = alice.get(f"user/alice/{server}/_aglais/notice").json()["notices"]
    assert notice[0]["message"].startswith(f"Your booking 'Full-sky join' ends at {end}.")
    index = alice.get(f"user/alice/{server}/")
    assert index.status_code == 200 and "<zeppelin-root>" in index.text
    assert (
        f'<script src="/user/alice/{server}/_aglais/notice.js" defer></script></body>' in index.text
    )
    assert "textContent" in alice.get(f"user/alice/{server}/_aglais/notice.js").text


def test_a_booked_servers_flavour_is_the_booked_sizes_whatever_the_form_chose(
    cluster, platform_on_cluster
):
    """An admin books the JupyterLab size for alice; she starts r<id> from the spawn
    page with the form's default (the tier's own size, whose flavour is Zeppelin): the
    spawn gate names the booked size, so the pod runs JupyterLab, as the dry run of the
    booking shows."""
    platform = platform_on_cluster
    alice = HubClient(platform.url)
    alice.login("alice", "alice")
    admin = HubClient(platform.url)
    admin.login("admin", "admin")
    now = time.time()
    response = admin.session.post(
        platform.reservations_url + "api/reservations",
        json={
            "size": "lab",
            "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
            "title": "Lab session",
            "user": "alice",
        },
        headers={"Authorization": f"token {admin.new_token()}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    server = response.json()["server_name"]
    page = alice.get(f"hub/spawn/alice/{server}")
    forms = [f for f in forms_of(page.text) if "spawn" in f["action"]]
    # what start_server submits (the form's defaults, or no options) is not the booking's
    assert (forms[0]["fields"] if forms else {}).get("profile") != "lab"

    event = alice.start_server(server, timeout=120)
    assert event.get("ready"), (event, platform.log_tail())
    pod = get(cluster, "pods", "aglais-alice", f"zeppelin-alice--{server}")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["auth-proxy", "jupyterlab"]
    wait_for(
        lambda: alice.get(f"user/alice/{server}/api/status").status_code == 200,
        timeout=60,
        what="JupyterLab to answer on the booking's server",
    )
    assert_render_pod_is_the_spawn(cluster, platform, "alice", "users", server, "--booked", "lab")

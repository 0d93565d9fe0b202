"""`aglais-hub render-pod`: every object of a Zeppelin spawn, valid for Kubernetes 1.30,
with each property the platform promises visible in the manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aglais_hub.config import load_values
from aglais_hub.offering import ProfileRefused, offering_from_values

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "config" / "examples" / "kubernetes.yaml"


def render(*args: str) -> tuple[int, list[dict], str]:
    result = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "render-pod", str(VALUES), *args],
        capture_output=True,
        text=True,
    )
    docs = [d for d in yaml.safe_load_all(result.stdout) if d] if result.returncode == 0 else []
    return result.returncode, docs, result.stderr


@pytest.fixture(scope="module")
def alice() -> dict[str, dict]:
    code, docs, err = render("--user", "alice", "--groups", "gaia-users")
    assert code == 0, err
    return {d["kind"]: d for d in docs}


def test_every_object_is_valid_kubernetes_1_30(alice):
    assert sorted(alice) == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ResourceQuota",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "ConfigMap",
            "Pod",
            "Service",
        ]
    )
    template = yaml.safe_load(alice["ConfigMap"]["data"]["executor-pod-template.yaml"])
    for obj in [*alice.values(), template]:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_everything_lives_in_the_users_own_namespace(alice):
    assert alice["Namespace"]["metadata"]["name"] == "aglais-alice"
    for kind, obj in alice.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "aglais-alice", kind


def test_the_users_namespace_enforces_pod_security_restricted(alice):
    labels = alice["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"


def test_spark_driver_rights_are_namespaced_and_minimal(alice):
    role, binding = alice["Role"], alice["RoleBinding"]
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert rules[("pods",)] == {
        "get",
        "list",
        "watch",
        "create",
        "delete",
        "deletecollection",
        "patch",
    }
    assert all("*" not in verbs for verbs in rules.values())
    assert not any("secrets" in resources for resources in rules)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "spark-driver",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "spark-driver", "namespace": "aglais-alice"}
    ]
    assert alice["Pod"]["spec"]["serviceAccountName"] == "spark-driver"


def test_quota_comes_from_the_tier(alice):
    hard = alice["ResourceQuota"]["spec"]["hard"]
    # standard: 2 servers × (driver 1 cpu + 4 executors × 2 cpu + proxy 100m)
    assert hard["requests.cpu"] == hard["limits.cpu"] == f"{2 * (1000 + 8000 + 100)}m"
    gib, mib = 2**30, 2**20
    # each 4 GiB JVM (driver and executors) with Spark's overhead: 10%, in whole MiB
    jvm = 4 * gib + 409 * mib
    per_server = jvm + 128 * mib + 4 * jvm
    assert int(hard["requests.memory"]) == 2 * per_server
    assert hard["pods"] == str(2 * (1 + 4))
    assert hard["requests.storage"] == str(10 * gib)
    assert hard["persistentvolumeclaims"] == "1"


def test_network_policy_lets_in_only_the_hub_proxy_and_spark_traffic(alice):
    spec = alice["NetworkPolicy"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    from_hub, spark = spec["ingress"]
    assert from_hub["ports"] == [{"protocol": "TCP", "port": 8888}]
    assert from_hub["from"][0]["podSelector"] == {"matchLabels": {"component": "proxy"}}
    assert spark["from"] == [{"podSelector": {}}]
    assert {p["port"] for p in spark["ports"]} == {7078, 7079}
    egress_ports = [{p["port"] for p in rule.get("ports", [])} for rule in spec["egress"]]
    assert {53} <= egress_ports[0] and {443, 6443} == egress_ports[1]
    assert spec["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert spec["egress"][-1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_pod_runs_the_auth_proxy_in_front_of_zeppelin(alice):
    pod = alice["Pod"]
    proxy, zeppelin = pod["spec"]["containers"]
    assert proxy["name"] == "auth-proxy"
    assert proxy["ports"] == [{"name": "notebook-port", "containerPort": 8888}]
    assert (
        zeppelin["name"] == "zeppelin" and "ports" not in zeppelin
    )  # reachable only via the proxy
    env = {e["name"]: e.get("value") for e in zeppelin["env"]}
    assert env["ZEPPELIN_RUN_MODE"] == "local"
    assert env["ZEPPELIN_ADDR"] == "127.0.0.1" and env["ZEPPELIN_PORT"] == "8080"
    assert env["ZEPPELIN_SERVER_CONTEXT_PATH"] == "/user/alice"
    assert env["ZEPPELIN_NOTEBOOK_DIR"].startswith("/home/zeppelin/")
    assert proxy["readinessProbe"]["httpGet"] == {
        "path": "/user/alice/_aglais/health",
        "port": "notebook-port",
    }
    for container in (proxy, zeppelin):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    # the tier's driver: its 4 GiB heap (spark.driver.memory) and Spark's overhead
    assert zeppelin["resources"]["limits"] == {
        "cpu": "1000m",
        "memory": str(4 * 2**30 + 409 * 2**20),
    }


def test_spark_configuration(alice):
    conf = dict(
        line.split(" ", 1)
        for line in alice["ConfigMap"]["data"]["spark-defaults.conf"].splitlines()
        if line and not line.startswith("#")
    )
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "aglais-alice"
    assert conf["spark.kubernetes.driver.pod.name"] == "zeppelin-alice"  # executors owned by it
    assert conf["spark.driver.host"] == "zeppelin-alice-driver.aglais-alice.svc"
    assert (conf["spark.driver.port"], conf["spark.blockManager.port"]) == ("7078", "7079")
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert conf["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    assert conf["spark.dynamicAllocation.maxExecutors"] == "4"
    assert conf["spark.executor.memory"] == "4096m"
    assert conf["spark.kubernetes.executor.podTemplateFile"] == (
        "/opt/spark/conf/executor-pod-template.yaml"
    )
    mounts = {m["name"]: m for m in alice["Pod"]["spec"]["containers"][1]["volumeMounts"]}
    assert mounts["spark-conf"]["mountPath"] == "/opt/spark/conf"
    template = yaml.safe_load(alice["ConfigMap"]["data"]["executor-pod-template.yaml"])
    (executor,) = template["spec"]["containers"]
    assert executor["image"] == "ghcr.io/aglais/spark:3.5.9"
    assert executor["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert template["metadata"]["labels"]["aglais.io/user"] == "alice"


def test_science_data_is_mounted_read_only_in_the_pod_and_every_executor(alice):
    pod = alice["Pod"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["gaia-dr3"]["csi"]["driver"] == "cephfs.csi.ceph.com"
    assert volumes["gaia-dr2"]["csi"]["volumeAttributes"]["share"] == "/export/gaia/GDR2"
    mounts = {m["name"]: m for m in pod["spec"]["containers"][1]["volumeMounts"]}
    assert mounts["gaia-dr3"] == {
        "name": "gaia-dr3",
        "mountPath": "/data/gaia/GDR3",
        "readOnly": True,
    }
    template = yaml.safe_load(alice["ConfigMap"]["data"]["executor-pod-template.yaml"])
    assert {v["name"] for v in template["spec"]["volumes"]} == {"gaia-dr3", "gaia-dr2"}
    assert all(m["readOnly"] for m in template["spec"]["containers"][0]["volumeMounts"])


def test_notebooks_find_the_catalogues_inside_the_data_volume(alice):
    (notebook,) = [c for c in alice["Pod"]["spec"]["containers"] if c["name"] == "zeppelin"]
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["AGLAIS_CATALOGUES"] == "/data/gaia/GDR3"
    mounts = {m["mountPath"] for m in notebook["volumeMounts"]}
    assert "/data/gaia/GDR3" in mounts


def test_storage_and_driver_service(alice):
    pvc = alice["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "claim-alice"
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(10 * 2**30)
    assert pvc["spec"]["storageClassName"] == "csi-cephfs"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    home = next(v for v in alice["Pod"]["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"]["claimName"] == "claim-alice"
    service = alice["Service"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"]["aglais.io/user"] == "alice"
    assert {p["port"] for p in service["spec"]["ports"]} == {7078, 7079}


def test_named_servers_and_profiles(tmp_path):
    code, docs, _ = render(
        "--user", "bob", "--groups", "gaia-power", "--server", "big", "--profile", "large"
    )
    assert code == 0
    objects = {d["kind"]: d for d in docs}
    assert objects["Pod"]["metadata"]["name"] == "zeppelin-bob--big"
    assert objects["Pod"]["metadata"]["labels"]["aglais.io/server"] == "big"
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == "claim-bob"  # shared
    assert "maxExecutors 16" in objects["ConfigMap"]["data"]["spark-defaults.conf"]
    code, docs, err = render("--user", "alice", "--groups", "gaia-users", "--profile", "large")
    assert code == 2 and "needs tier 'Power' or higher; your tier is 'Standard'" in err
    code, docs, _ = render("--user", "alice", "--groups", "gaia-users", "--profile", "lab")
    assert code == 0
    pod = next(d for d in docs if d["kind"] == "Pod")
    assert pod["spec"]["containers"][1]["name"] == "jupyterlab"


def test_profile_policy_and_names_match_kubespawner():
    offering = offering_from_values(load_values(VALUES))
    standard = offering.tier_for_groups(["gaia-users"])
    with pytest.raises(ProfileRefused, match="There is no size 'huge'"):
        offering.server_size(standard, "huge")
    assert offering.tier_for_groups(["gaia-users", "gaia-power"]).name == "power"
    # the names KubeSpawner's own expansion makes ("safe" slug scheme)
    from types import SimpleNamespace

    from kubespawner import KubeSpawner

    cases = [("alice", ""), ("Alice.Smith@uni", "My Server"), ("bob", "big"), ("a" * 40, "b" * 30)]
    for user, server in cases:
        code, docs, err = render("--user", user, "--groups", "gaia-power", "--server", server)
        assert code == 0, err
        made = {d["kind"]: d["metadata"]["name"] for d in docs}
        stub = SimpleNamespace(
            slug_scheme="safe",
            name=server,
            user=SimpleNamespace(name=user, id=0),
            _namespace_default=lambda: "default",
        )
        for kind, template in [
            ("Pod", "zeppelin-{user_server}"),
            ("Namespace", "aglais-{username}"),
            ("PersistentVolumeClaim", "claim-{username}"),
        ]:
            assert made[kind] == KubeSpawner._expand_user_properties(stub, template), (user, kind)


def test_spawn_page_steps_are_in_words_users_understand():
    from spawners.zeppelin.podstatus import friendly_event, start_problem

    assert friendly_event(
        {
            "reason": "Scheduled",
            "message": "Successfully assigned aglais-alice/zeppelin-alice to node-2",
        }
    ) == ("Found room for your server on the cluster (node node-2)")
    assert friendly_event(
        {"reason": "Started", "message": "Started container zeppelin"}
    ).startswith("Zeppelin is starting")
    assert friendly_event({"reason": "Created", "message": "Created container zeppelin"}) == ""
    assert friendly_event({"reason": "Custom", "message": "x", "type": "Normal"}) is None
    unschedulable = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient memory.",
                }
            ]
        }
    }
    assert start_problem(unschedulable) == (
        "Your server cannot start: no node has room for it "
        "(0/2 nodes are available: 2 Insufficient memory.)."
    )
    crashing = {
        "status": {
            "containerStatuses": [
                {
                    "name": "zeppelin",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                }
            ]
        }
    }
    assert "it keeps crashing (container zeppelin, CrashLoopBackOff: back-off 10s)" in (
        start_problem(crashing)
    )
    assert start_problem({"status": {"phase": "Pending"}}) is None
    # the real scheduler's word while the provisioner has not bound the claim yet: a wait
    waiting_for_volume = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: pod has unbound immediate "
                    "PersistentVolumeClaims. not found",
                }
            ]
        }
    }
    assert start_problem(waiting_for_volume) is None

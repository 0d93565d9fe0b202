"""RBAC is real: the ZeppelinSpawner behind the real platform (hub, dev IdP, auth proxy)
spawns on the real control plane (aglais_hub.testing.devcluster) as the chart's hub
ServiceAccount, with the ClusterRole `helm template` renders and a token for it
(aglais_hub.testing.hubaccount), never as the cluster's admin. So the chart's role is
what these tests prove sufficient, and one verb less makes a spawn fail in words that
name the refused verb and resource.

The binaries come from `make cluster-bin`; without them these tests skip, and under
CI=true they fail (the fixture is test_controlplane's). NetworkPolicy is not enforced
on the dev cluster (no CNI): nothing here leans on it.
"""

from __future__ import annotations

import pytest

from aglais_hub.testing.hubaccount import HubAccount, hub_rbac, without_verb
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.rawapi import wait_for
from tests.test_controlplane import eventually
from tests.test_zeppelin_spawner import platform_with


def cluster_test(test):  # noqa: ANN001, ANN201
    """On the real control plane (the unit test at the end needs no binaries)."""
    return pytest.mark.e2e(pytest.mark.controlplane(test))


@pytest.fixture(scope="module")
def core(dev):
    from kubernetes import client

    api = dev.client()  # the admin: only the test looks with it, never the hub
    yield client.CoreV1Api(api)
    api.close()


def leftovers(core, namespace: str) -> list[str]:
    found = [f"pod/{p.metadata.name}" for p in core.list_namespaced_pod(namespace).items]
    found += [
        f"pvc/{c.metadata.name}"
        for c in core.list_namespaced_persistent_volume_claim(namespace).items
    ]
    found += [f"service/{s.metadata.name}" for s in core.list_namespaced_service(namespace).items]
    found += [
        f"configmap/{m.metadata.name}"
        for m in core.list_namespaced_config_map(namespace).items
        if m.metadata.name != "kube-root-ca.crt"
    ]
    return found


@cluster_test
def test_the_chart_role_is_enough_for_a_server_behind_the_auth_proxy(dev, core, tmp_path):
    rbac = hub_rbac()
    account = HubAccount(dev, tmp_path)
    kubeconfig = account.create(rbac)
    assert account.who_am_i(kubeconfig) == "system:serviceaccount:science:aglais-hub"
    assert "client-key-data" not in kubeconfig.read_text()  # a token, not a certificate

    with platform_with(kubeconfig, tmp_path / "platform") as platform:
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        event = alice.start_server(timeout=150)
        assert event.get("ready"), (event, platform.log_tail())

        ns = "aglais-alice"
        pod = core.read_namespaced_pod("zeppelin-alice", ns)
        assert pod.status.phase == "Running" and pod.spec.node_name == "node-1"
        assert pod.status.pod_ip.startswith(dev.node_prefix("node-1"))
        claim = core.read_namespaced_persistent_volume_claim("claim-alice", ns)
        assert claim.status.phase == "Bound"
        assert claim.spec.storage_class_name == "aglais-local"  # our provisioner's
        assert core.read_namespaced_resource_quota("tier-quota", ns)
        # the driver Service and Spark ConfigMap are owned by the pod (garbage collected)
        uid = pod.metadata.uid
        for owned in (
            core.read_namespaced_service("zeppelin-alice-driver", ns),
            core.read_namespaced_config_map("zeppelin-alice-spark", ns),
        ):
            assert owned.metadata.owner_references[0].uid == uid

        # through the hub's proxy to the auth proxy, which logs alice in with hub OAuth,
        # and on to Zeppelin (its stand-in)
        version = wait_for(
            lambda: (r := alice.get("user/alice/api/version")).status_code == 200 and r.json(),
            timeout=60,
            what="Zeppelin",
        )
        assert version["body"]["version"].startswith("0.12.")
        health = alice.get("user/alice/_aglais/health").json()
        assert health == {"proxy": "ok", "zeppelin": "up"}
        bob = HubClient(platform.url)
        bob.login("bob", "bob")
        assert bob.get("user/alice/_aglais/usage").status_code == 403

        # stopping, as the hub's ServiceAccount: the pod goes, the claim stays
        response = alice.session.delete(
            alice.url("hub/api/users/alice/server"), headers=alice.xsrf_headers()
        )
        assert response.status_code in (202, 204)
        eventually(lambda: not core.list_namespaced_pod(ns).items, "the pod to go")
        alice.wait_stopped("alice")
        assert core.read_namespaced_persistent_volume_claim("claim-alice", ns)
    assert "Forbidden" not in platform.log_file.read_text()


@cluster_test
def test_one_verb_less_fails_the_spawn_naming_it_and_leaves_nothing(dev, core, tmp_path):
    # a release of its own (another namespace: another ServiceAccount and ClusterRole)
    rbac = hub_rbac(namespace="science-rbac")
    account = HubAccount(dev, tmp_path)
    lacking = without_verb(rbac, "resourcequotas", "create")
    assert ["create", "update"] in [
        r["verbs"] for r in rbac.cluster_role["rules"] if "resourcequotas" in r["resources"]
    ]
    kubeconfig = account.create(lacking)
    assert account.who_am_i(kubeconfig) == "system:serviceaccount:science-rbac:aglais-hub"

    with platform_with(kubeconfig, tmp_path / "platform") as platform:
        bob = HubClient(platform.url)
        bob.login("bob", "bob")
        event = bob.start_server(timeout=120)
        assert event.get("failed"), (event, platform.log_tail())
        message = event["message"]
        assert (
            "The hub may not create resourcequotas in namespace aglais-bob (forbidden "
            "by the cluster's RBAC: "
        ) in message, message
        assert 'cannot create resource "resourcequotas"' in message
        assert "Ask an administrator to check the hub's ClusterRole." in message
        # the spawn page says it too (after a failure it shows the failure, not a form)
        page = bob.get("hub/spawn-pending/bob")
        assert page.status_code == 403
        assert "The hub may not create resourcequotas in namespace aglais-bob" in page.text
        ns = "aglais-bob"
        eventually(lambda: not leftovers(core, ns), "nothing left of the spawn", timeout=30)
        bob.wait_stopped("bob")

        # the chart's own role back (the API server authorizes each request afresh):
        # the same hub, the same token, bob tries again and his server starts
        account.create(rbac)
        event = bob.start_server(timeout=150)
        assert event.get("ready"), (event, platform.log_tail())
        assert core.read_namespaced_pod("zeppelin-bob", ns).status.phase == "Running"
        assert core.read_namespaced_persistent_volume_claim("claim-bob", ns).status.phase == "Bound"
        wait_for(
            lambda: bob.get("user/bob/api/version").status_code == 200,
            timeout=60,
            what="Zeppelin behind the auth proxy",
        )
        assert bob.get("user/bob/_aglais/health").json()["proxy"] == "ok"


def test_only_rbac_refusals_are_put_in_rbac_words():
    import json

    from kubernetes_asyncio.client.rest import ApiException

    from spawners.zeppelin.spawner import forbidden_message

    def refusal(status: int, message: str) -> ApiException:
        error = ApiException(status=status, reason="Forbidden")
        error.body = json.dumps({"kind": "Status", "code": status, "message": message})
        return error

    cluster_scope = refusal(
        403,
        'namespaces is forbidden: User "system:serviceaccount:'
        'science:aglais-hub" cannot create resource "namespaces" in '
        'API group "" at the cluster scope',
    )
    try:  # found through the chain (exponential_backoff, a TimeoutError from it...)
        raise RuntimeError("wrapped") from cluster_scope
    except RuntimeError as wrapped:
        text = forbidden_message(wrapped)
    assert text is not None
    assert text.startswith("The hub may not create namespaces at the cluster scope (forbidden")
    grouped = refusal(
        403,
        'roles.rbac.authorization.k8s.io is forbidden: User "u" cannot '
        'update resource "roles" in API group "rbac.authorization.k8s.io" in '
        'the namespace "aglais-alice"',
    )
    assert forbidden_message(grouped).startswith(
        "The hub may not update roles (API group rbac.authorization.k8s.io) in namespace "
        "aglais-alice ("
    )
    quota = refusal(403, 'pods "zeppelin-alice" is forbidden: exceeded quota: tier-quota')
    assert forbidden_message(quota) is None  # the quota's own message says more
    assert forbidden_message(refusal(500, 'cannot create resource "pods"')) is None
    assert forbidden_message(ValueError("no API error")) is None

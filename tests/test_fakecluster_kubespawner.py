"""The real, unmodified KubeSpawner behind a real JupyterHub, on the testing cluster.

Kubernetes cannot run here; the testing cluster (aglais_hub.testing.fakecluster)
stands in for it. The user's image is mapped to this machine's
jupyterhub-singleuser, which the kubelet runs at the pod's own loopback address.
"""

from __future__ import annotations

import json

import pytest

from aglais_hub.testing.fakecluster.controllers import R
from aglais_hub.testing.hubprocess import HubProcess
from aglais_hub.testing.rawapi import wait_for
from tests.test_devcluster import KUBESPAWNER_CONFIG as ON_ANY_CLUSTER

pytestmark = pytest.mark.e2e

# KubeSpawner as on the real control plane (tests/test_devcluster.py), with the stand-in's
# storage class
KUBESPAWNER_CONFIG = ON_ANY_CLUSTER + 'c.KubeSpawner.storage_class = "standard"\n'


@pytest.fixture
def hub(cluster, tmp_path):
    cluster.call(cluster.cluster.store.create, R["namespaces"], "", {"metadata": {"name": "jhub"}})
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace="jhub")
    with HubProcess(tmp_path / "hub", KUBESPAWNER_CONFIG, {"KUBECONFIG": str(kubeconfig)}) as hub:
        yield hub.url, hub.api


def test_kubespawner_spawns_on_the_testing_cluster(cluster, hub):
    url, api = hub
    store = cluster.cluster.store
    cluster.call(setattr, cluster.cluster.kubelet, "start_delay", 1.0)  # a visible Pending
    assert api.post(f"{url}/hub/api/users/alice").status_code == 201
    assert api.post(f"{url}/hub/api/users/alice/server").status_code == 202

    # progress streams the pod's events to the hub's progress API
    messages = []
    with api.get(f"{url}/hub/api/users/alice/server/progress", stream=True, timeout=120) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    break
    assert event.get("ready"), messages
    text = "\n".join(messages)
    assert "Successfully assigned jhub/jupyter-alice to node-" in text
    assert "Started container notebook" in text

    claim = cluster.call(store.get, R["persistentvolumeclaims"], "jhub", "claim-alice")
    assert claim["status"]["phase"] == "Bound"
    assert claim["status"]["capacity"]["storage"] == "1Gi"
    pod = cluster.call(store.get, R["pods"], "jhub", "jupyter-alice")
    assert pod["status"]["phase"] == "Running"
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("127.") and pod_ip != "127.0.0.1"

    # the hub routes /user/alice/ to the pod's own address, and the server answers through it
    routes = api.get(f"{url}/hub/api/proxy").json()
    assert routes["/user/alice/"]["target"] == f"http://{pod_ip}:8888"
    status = api.get(f"{url}/user/alice/api/status")
    assert status.status_code == 200 and "started" in status.json()
    # the home directory is the claim's volume
    volume = cluster.cluster.kubelet.volume_dir(claim["spec"]["volumeName"])
    assert any(volume.iterdir()), "the server wrote nothing to its home volume"

    # stopping deletes the pod and keeps the claim
    assert api.delete(f"{url}/hub/api/users/alice/server").status_code in (202, 204)
    wait_for(lambda: not cluster.call(store.exists, R["pods"], "jhub", "jupyter-alice"),
             what="the pod to be deleted")  # fmt: skip
    wait_for(lambda: not api.get(f"{url}/hub/api/users/alice").json()["servers"],
             what="the hub to see the server stopped")  # fmt: skip
    assert cluster.call(store.exists, R["persistentvolumeclaims"], "jhub", "claim-alice")

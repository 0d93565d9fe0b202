"""Fidelity of the testing cluster's API server (aglais_hub.testing.fakecluster).

Each test checks one Kubernetes behaviour our clients rely on, over real HTTP.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket

from aglais_hub.testing.fakecluster import FakeCluster
from aglais_hub.testing.rawapi import Api, claim, wait_for


@pytest.fixture
def api(cluster):
    return Api(cluster.url)


# -- objects, versions and errors ------------------------------------------------------------


def test_resource_versions_increase_and_lists_carry_the_latest(api):
    versions = []
    for i in range(3):
        code, cm = api.post("/api/v1/namespaces/default/configmaps",
                            {"metadata": {"name": f"c{i}"}, "data": {"k": "v"}})  # fmt: skip
        assert code == 201
        assert cm["metadata"]["uid"] and cm["metadata"]["creationTimestamp"]
        versions.append(int(cm["metadata"]["resourceVersion"]))
    assert versions == sorted(versions) and len(set(versions)) == 3
    code, listing = api.get("/api/v1/namespaces/default/configmaps")
    assert listing["kind"] == "ConfigMapList"
    assert int(listing["metadata"]["resourceVersion"]) >= versions[-1]
    cm["data"]["k"] = "w"
    code, updated = api.put("/api/v1/namespaces/default/configmaps/c2", cm)
    assert code == 200 and int(updated["metadata"]["resourceVersion"]) > versions[-1]


def test_generate_name(api):
    code, cm = api.post("/api/v1/namespaces/default/configmaps",
                        {"metadata": {"generateName": "spark-conf-"}})  # fmt: skip
    assert code == 201 and cm["metadata"]["name"].startswith("spark-conf-")
    assert len(cm["metadata"]["name"]) > len("spark-conf-")


def test_error_status_bodies(api):
    code, body = api.get("/api/v1/namespaces/default/pods/nope")
    assert (code, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    assert body["message"] == 'pods "nope" not found'
    assert api.pod()[0] == 201
    code, body = api.pod()
    assert (code, body["reason"]) == (409, "AlreadyExists")
    # a stale resourceVersion on update is a Conflict
    _, pod = api.get("/api/v1/namespaces/default/pods/p")
    stale = json.loads(json.dumps(pod))
    pod["metadata"]["labels"]["v"] = "2"
    assert api.put("/api/v1/namespaces/default/pods/p", pod)[0] == 200
    stale["metadata"]["labels"]["v"] = "3"
    code, body = api.put("/api/v1/namespaces/default/pods/p", stale)
    assert (code, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]
    # invalid names and missing fields are 422 Invalid, naming the field
    code, body = api.pod(name="Bad_Name")
    assert (code, body["reason"]) == (422, "Invalid") and "metadata.name" in body["message"]
    code, body = api.post("/api/v1/namespaces/default/pods",
                          {"metadata": {"name": "empty"}, "spec": {"containers": []}})  # fmt: skip
    assert code == 422 and "spec.containers: Required value" in body["message"]
    code, body = api.post("/api/v1/namespaces/default/services",
                          {"metadata": {"name": "9svc"}, "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    assert code == 422
    code, body = api.post("/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}})
    assert code == 404 and body["message"] == 'namespaces "nowhere" not found'
    code, body = api.get("/api/v1/namespaces/default/pods", labelSelector="a in (b")
    assert code == 400


def test_label_selectors(api):
    for name, labels in [("p1", {"app": "a", "tier": "x"}), ("p2", {"app": "b"}),
                         ("p3", {"app": "c", "tier": "y"})]:  # fmt: skip
        assert api.pod(name, labels)[0] == 201

    def names(selector):
        _, body = api.get("/api/v1/namespaces/default/pods", labelSelector=selector)
        return sorted(p["metadata"]["name"] for p in body["items"])

    assert names("app=a") == ["p1"]
    assert names("app==b") == ["p2"]
    assert names("app!=a") == ["p2", "p3"]
    assert names("app in (a,c)") == ["p1", "p3"]
    assert names("app notin (a,c)") == ["p2"]
    assert names("tier") == ["p1", "p3"]
    assert names("!tier") == ["p2"]
    assert names("tier,app in (c)") == ["p3"]


def test_field_selectors(cluster, api):
    for name in ("f1", "f2"):
        api.pod(name, restartPolicy="Never")
    wait_for(lambda: all(api.get(f"/api/v1/namespaces/default/pods/{n}")[1]["status"]["phase"]
                         == "Running" for n in ("f1", "f2")))  # fmt: skip
    _, body = api.get("/api/v1/pods", fieldSelector="metadata.name=f2")
    assert [p["metadata"]["name"] for p in body["items"]] == ["f2"]
    _, body = api.get("/api/v1/namespaces/default/pods", fieldSelector="status.phase=Running")
    assert len(body["items"]) == 2
    _, body = api.get("/api/v1/namespaces/default/pods", fieldSelector="status.phase!=Running")
    assert body["items"] == []
    node = body = api.get("/api/v1/namespaces/default/pods/f1")[1]["spec"]["nodeName"]
    _, body = api.get(
        "/api/v1/pods", fieldSelector=f"spec.nodeName={node},metadata.namespace=default"
    )
    assert "f1" in [p["metadata"]["name"] for p in body["items"]]
    code, body = api.get("/api/v1/pods", fieldSelector="spec.bogus=x")
    assert code == 400 and "field label not supported" in body["message"]


def test_patch_types(api):
    api.pod("pp", {"app": "a"})
    path = "/api/v1/namespaces/default/pods/pp"
    code, pod = api.patch(path, {"metadata": {"labels": {"new": "1", "app": None}}},
                          "application/merge-patch+json")  # fmt: skip
    assert code == 200 and pod["metadata"]["labels"] == {"new": "1"}
    code, pod = api.patch(path, {"spec": {"containers": [{"name": "c", "image": "inert/v2"}]}},
                          "application/strategic-merge-patch+json")  # fmt: skip
    assert code == 200 and [c["image"] for c in pod["spec"]["containers"]] == ["inert/v2"]
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"  # merged, not replaced
    code, pod = api.patch(path, [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}],
                          "application/json-patch+json")  # fmt: skip
    assert code == 200 and pod["metadata"]["annotations"] == {"a": "b"}
    code, body = api.patch(path, [{"op": "remove", "path": "/metadata/nothing"}],
                           "application/json-patch+json")  # fmt: skip
    assert code == 422


# -- watches ---------------------------------------------------------------------------------


def read_watch(url, params, count, timeout=10):
    events = []
    with requests.get(url, params={**params, "watch": "true"}, stream=True, timeout=timeout) as r:
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
                if len(events) >= count:
                    break
    return events


def test_watch_resumes_from_a_resource_version(api, cluster):
    _, first = api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w1"}})
    api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w2"}})
    api.delete("/api/v1/namespaces/default/configmaps/w1")
    events = read_watch(cluster.url + "/api/v1/namespaces/default/configmaps",
                        {"resourceVersion": first["metadata"]["resourceVersion"]}, 2)  # fmt: skip
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"), ("DELETED", "w1"),
    ]  # fmt: skip
    # without a version: the current state as ADDED, then live events
    got = []
    t = threading.Thread(target=lambda: got.extend(read_watch(
        cluster.url + "/api/v1/namespaces/default/configmaps", {}, 2)))  # fmt: skip
    t.start()
    time.sleep(0.3)
    api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w3"}})
    t.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "w2"), ("ADDED", "w3"),
    ]  # fmt: skip


def test_watch_from_a_compacted_version_gets_410():
    import asyncio

    async def scenario():
        cluster = await FakeCluster(nodes=0, history=5).start()
        try:
            store = cluster.store
            from aglais_hub.testing.fakecluster.controllers import R

            for i in range(10):
                store.create(R["configmaps"], "default", {"metadata": {"name": f"c{i}"}})
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, lambda: read_watch(
                cluster.url + "/api/v1/namespaces/default/configmaps",
                {"resourceVersion": "1"}, 1))  # fmt: skip
        finally:
            await cluster.stop()

    (event,) = asyncio.run(scenario())
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_watch_bookmarks_and_timeout(cluster, api):
    cluster.call(setattr, cluster.cluster, "bookmark_interval", 0.2)
    started = time.monotonic()
    events = read_watch(cluster.url + "/api/v1/namespaces/default/pods",
                        {"allowWatchBookmarks": "true", "timeoutSeconds": "1",
                         "resourceVersion": "1"}, 100)  # fmt: skip
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5, "the watch must end at timeoutSeconds"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and all(int(b["object"]["metadata"]["resourceVersion"]) > 0 for b in bookmarks)


def test_watch_over_websocket_and_selector_transitions(cluster, api):
    api.pod("ws", {"app": "a"})
    _, pod = api.get("/api/v1/namespaces/default/pods/ws")
    rv = pod["metadata"]["resourceVersion"]
    ws = websocket.create_connection(
        cluster.url.replace("http", "ws") + f"/api/v1/namespaces/default/pods?watch=true&"
        f"labelSelector=app%3Da&resourceVersion={rv}", timeout=10)  # fmt: skip
    try:
        # relabelling takes the pod out of the selection: the watch says DELETED
        api.patch("/api/v1/namespaces/default/pods/ws", {"metadata": {"labels": {"app": "b"}}},
                  "application/merge-patch+json")  # fmt: skip
        seen = []
        while not any(e["type"] == "DELETED" for e in seen):
            seen.append(json.loads(ws.recv()))
        assert seen[-1]["object"]["metadata"]["labels"]["app"] == "b"
        api.patch("/api/v1/namespaces/default/pods/ws", {"metadata": {"labels": {"app": "a"}}},
                  "application/merge-patch+json")  # fmt: skip
        assert json.loads(ws.recv())["type"] == "ADDED"
    finally:
        ws.close()


def test_dropped_watches_end_and_can_resume(cluster, api):
    result = {}

    def watch():
        result["events"] = read_watch(cluster.url + "/api/v1/namespaces/default/configmaps",
                                      {"resourceVersion": "1"}, 1000, timeout=30)  # fmt: skip

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    assert cluster.call(cluster.cluster.drop_watches) >= 1
    t.join(10)
    assert not t.is_alive(), "a dropped watch must end its stream"


# -- admission: quotas -----------------------------------------------------------------------


def test_quota_admission(api, cluster):
    api.post("/api/v1/namespaces", {"metadata": {"name": "q"}})
    api.post("/api/v1/namespaces/q/resourcequotas", {
        "metadata": {"name": "tier"},
        "spec": {"hard": {"pods": "2", "requests.memory": "1Gi", "requests.cpu": "1",
                          "persistentvolumeclaims": "1", "requests.storage": "5Gi"}},
    })  # fmt: skip
    sized = {"containers": [{"name": "c", "image": "inert/i", "resources": {
        "requests": {"cpu": "500m", "memory": "512Mi"}}}]}  # fmt: skip
    assert api.pod("q1", ns="q", **sized)[0] == 201
    code, body = api.pod("q2", ns="q", containers=[{"name": "c", "image": "inert/i", "resources": {
        "requests": {"cpu": "250m", "memory": "768Mi"}}}])  # fmt: skip
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'pods "q2" is forbidden: exceeded quota: tier, requested: requests.memory=768Mi, '
        "used: requests.memory=512Mi, limited: requests.memory=1Gi"
    )
    code, body = api.pod("q3", ns="q")
    assert (
        code == 403
        and "failed quota: tier: must specify requests.cpu,requests.memory" in body["message"]
    )
    assert api.pod("q4", ns="q", **sized)[0] == 201
    code, body = api.pod("q5", ns="q", **sized)
    assert code == 403 and "exceeded quota: tier" in body["message"] and "pods=1" in body["message"]
    claim = {"metadata": {"name": "big"}, "spec": {"accessModes": ["ReadWriteOnce"],
             "resources": {"requests": {"storage": "6Gi"}}}}  # fmt: skip
    code, body = api.post("/api/v1/namespaces/q/persistentvolumeclaims", claim)
    assert code == 403 and "requests.storage=6Gi" in body["message"]
    claim["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert api.post("/api/v1/namespaces/q/persistentvolumeclaims", claim)[0] == 201
    used = wait_for(lambda: (api.get("/api/v1/namespaces/q/resourcequotas/tier")[1]
                             .get("status", {}).get("used", {}).get("pods") == "2")
                    and api.get("/api/v1/namespaces/q/resourcequotas/tier")[1]["status"]["used"])  # fmt: skip
    assert used["requests.memory"] == "1Gi" and used["requests.storage"] == "5Gi"
    # freeing a pod frees its share of the quota
    api.delete("/api/v1/namespaces/q/pods/q4", gracePeriodSeconds="0")
    wait_for(lambda: api.pod("q6", ns="q", **sized)[0] == 201, what="quota to be freed")


# -- volumes ---------------------------------------------------------------------------------


def test_claims_bind_and_only_grow_where_the_class_allows(api):
    base = "/api/v1/namespaces/default/persistentvolumeclaims"
    assert api.post(base, claim("home", "1Gi"))[0] == 201
    pvc = wait_for(lambda: (c := api.get(f"{base}/home")[1])["status"]["phase"] == "Bound" and c)
    assert pvc["spec"]["storageClassName"] == "standard"  # the default class
    code, pv = api.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    assert pv["spec"]["claimRef"]["name"] == "home" and pv["spec"]["capacity"]["storage"] == "1Gi"
    # grow
    code, _ = api.patch(f"{base}/home", {"spec": {"resources": {"requests": {"storage": "2Gi"}}}},
                        "application/merge-patch+json")  # fmt: skip
    assert code == 200
    wait_for(lambda: api.get(f"{base}/home")[1]["status"]["capacity"]["storage"] == "2Gi")
    # never shrink
    code, body = api.patch(f"{base}/home", {"spec": {"resources": {"requests": {"storage": "1Gi"}}}},
                           "application/merge-patch+json")  # fmt: skip
    assert code == 422 and "can not be less than previous value" in body["message"]
    # a class without allowVolumeExpansion refuses growth
    api.post("/apis/storage.k8s.io/v1/storageclasses",
             {"metadata": {"name": "fixed"}, "provisioner": "x"})  # fmt: skip
    api.post(base, claim("fixed", "1Gi", "fixed"))
    wait_for(lambda: api.get(f"{base}/fixed")[1]["status"]["phase"] == "Bound")
    code, body = api.patch(f"{base}/fixed", {"spec": {"resources": {"requests": {"storage": "2Gi"}}}},
                           "application/merge-patch+json")  # fmt: skip
    assert (
        code == 403
        and "storageclass that provisions the pvc must support resize" in body["message"]
    )
    # an unknown class leaves the claim Pending with an event saying why
    api.post(base, claim("lost", "1Gi", "gold"))
    time.sleep(0.3)
    assert api.get(f"{base}/lost")[1]["status"]["phase"] == "Pending"
    _, events = api.get(
        "/api/v1/namespaces/default/events", fieldSelector="involvedObject.name=lost"
    )
    assert any(e["reason"] == "ProvisioningFailed" and '"gold" not found' in e["message"]
               for e in events["items"])  # fmt: skip


# -- deletion --------------------------------------------------------------------------------


def owned(name, owner):
    return {"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}]}}  # fmt: skip


def cm_exists(api, name):
    return api.get(f"/api/v1/namespaces/default/configmaps/{name}")[0] == 200


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
def test_cascading_deletes(api, policy):
    base = "/api/v1/namespaces/default/configmaps"
    _, owner = api.post(base, {"metadata": {"name": "owner"}})
    api.post(base, owned("child", owner))
    code, body = api.delete(f"{base}/owner", {"propagationPolicy": policy})
    assert code == 200
    wait_for(lambda: not cm_exists(api, "owner"), what="the owner to go")
    if policy == "Orphan":
        time.sleep(0.2)
        assert cm_exists(api, "child")
        assert "ownerReferences" not in api.get(f"{base}/child")[1]["metadata"]
    else:
        wait_for(lambda: not cm_exists(api, "child"), what="the dependent to go")


def test_foreground_owner_waits_for_its_dependents(cluster, api):
    base = "/api/v1/namespaces/default/configmaps"
    _, owner = api.post(base, {"metadata": {"name": "fg"}})
    child = owned("fg-child", owner)
    child["metadata"]["finalizers"] = ["test/hold"]
    api.post(base, child)
    api.delete(f"{base}/fg", {"propagationPolicy": "Foreground"})
    time.sleep(0.3)
    _, still = api.get(f"{base}/fg")
    assert (
        still["metadata"]["deletionTimestamp"]
        and "foregroundDeletion" in still["metadata"]["finalizers"]
    )
    api.patch(
        f"{base}/fg-child", {"metadata": {"finalizers": None}}, "application/merge-patch+json"
    )
    wait_for(lambda: not cm_exists(api, "fg"), what="the owner to go after its dependent")


def test_namespace_deletion_removes_everything_in_it(api, cluster):
    api.post("/api/v1/namespaces", {"metadata": {"name": "gone"}})
    api.pod("gp", ns="gone")
    # a finalizer holds one object, so the namespace stays Terminating until it is released
    api.post("/api/v1/namespaces/gone/configmaps",
             {"metadata": {"name": "held", "finalizers": ["test/hold"]}})  # fmt: skip
    api.post("/api/v1/namespaces/gone/persistentvolumeclaims", claim("d", "1Gi"))
    wait_for(lambda: api.get("/api/v1/persistentvolumes")[1]["items"], what="the volume")
    api.delete("/api/v1/namespaces/gone")
    time.sleep(0.5)
    _, ns = api.get("/api/v1/namespaces/gone")
    assert ns["status"]["phase"] == "Terminating"
    assert api.get("/api/v1/namespaces/gone/pods")[1]["items"] == []
    assert api.post("/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "late"}})[0] == 403
    api.patch("/api/v1/namespaces/gone/configmaps/held", {"metadata": {"finalizers": None}},
              "application/merge-patch+json")  # fmt: skip
    wait_for(lambda: api.get("/api/v1/namespaces/gone")[0] == 404, what="the namespace to go")
    assert api.get("/api/v1/namespaces/gone/pods")[1]["items"] == []
    assert api.get("/api/v1/persistentvolumes")[1]["items"] == []


# -- discovery and clients -------------------------------------------------------------------


def test_discovery_and_the_official_clients(cluster, tmp_path):
    import asyncio

    from kubernetes import client, config

    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    core = client.CoreV1Api(config.new_client_from_config(str(path)))
    assert "default" in [n.metadata.name for n in core.list_namespace().items]
    assert client.VersionApi(core.api_client).get_code().git_version.startswith("v1.30")
    groups = client.ApisApi(core.api_client).get_api_versions().groups
    assert {"rbac.authorization.k8s.io", "networking.k8s.io", "storage.k8s.io"} <= {
        g.name for g in groups
    }
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    rbac.create_namespaced_role("default", {"metadata": {"name": "spark"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]})  # fmt: skip
    assert rbac.read_namespaced_role("spark", "default").rules[0].verbs == ["get", "list", "watch"]

    async def with_asyncio_client():
        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio import config as aconfig

        api_client = await aconfig.new_client_from_config(str(path))
        async with api_client:
            pods = await aclient.CoreV1Api(api_client).list_namespaced_pod("default")
            return pods.metadata.resource_version

    assert int(asyncio.run(with_asyncio_client())) > 0


def test_status_subresource_and_delete_collection(api):
    api.pod("s1", {"role": "executor"})
    api.pod("s2", {"role": "executor"})
    api.pod("s3", {"role": "driver"})
    path = "/api/v1/namespaces/default/pods/s3"
    # writes to the main resource leave status alone; writes to /status change only status
    _, pod = api.get(path)
    pod["status"] = {"phase": "Bogus"}
    pod["metadata"]["labels"]["seen"] = "yes"
    code, updated = api.put(path, pod)
    assert code == 200 and updated["status"]["phase"] != "Bogus"
    assert updated["metadata"]["labels"]["seen"] == "yes"
    code, patched = api.patch(f"{path}/status", {"status": {"message": "hello"},
                              "metadata": {"labels": {"ignored": "x"}}},
                              "application/merge-patch+json")  # fmt: skip
    assert code == 200 and patched["status"]["message"] == "hello"
    assert "ignored" not in patched["metadata"]["labels"]
    # delete-collection by label selector, as Spark stops its executors
    code, deleted = api.delete("/api/v1/namespaces/default/pods", labelSelector="role=executor",
                               gracePeriodSeconds="0")  # fmt: skip
    assert code == 200 and sorted(p["metadata"]["name"] for p in deleted["items"]) == ["s1", "s2"]
    wait_for(lambda: [p["metadata"]["name"] for p in
                      api.get("/api/v1/namespaces/default/pods")[1]["items"]] == ["s3"])  # fmt: skip

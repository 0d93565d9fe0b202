"""The testing cluster's scheduler and kubelet: pods really run, stop and fail.

Containers with the image ``local/python`` run their command on this machine
(see aglais_hub.testing.fakecluster.images); others are inert.
"""

from __future__ import annotations

import os
import time

import requests

from aglais_hub.testing.rawapi import Api, claim, wait_for


def run_pod(api: Api, name: str, code: str, restart="Never", ns="default", **extra):
    container = {"name": "main", "image": "local/python", "command": ["python", "-c", code]}
    container.update(extra.pop("container", {}))
    status, body = api.pod(name, {"app": name}, ns=ns, restartPolicy=restart,
                           containers=[container], **extra)  # fmt: skip
    assert status == 201, body
    return body


def pod(api, name, ns="default"):
    return api.get(f"/api/v1/namespaces/{ns}/pods/{name}")[1]


def phase(api, name):
    return pod(api, name).get("status", {}).get("phase")


def events(api, name):
    _, body = api.get(
        "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.name={name}"
    )
    return [(e["reason"], e["message"]) for e in body["items"]]


def pid_of(cluster, name):
    for run in list(cluster.cluster.kubelet.runs.values()):
        if run.name == name:
            return next((c.process.pid for c in run.containers.values() if c.process), None)
    return None


def test_exit_codes_become_container_states_and_phases(cluster):
    api = Api(cluster.url)
    run_pod(api, "ok", "print('fine')")
    run_pod(api, "bad", "import sys; sys.exit(3)")
    wait_for(lambda: phase(api, "ok") == "Succeeded" and phase(api, "bad") == "Failed")
    (status,) = pod(api, "bad")["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["reason"] == "Error"
    assert (
        pod(api, "ok")["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
        == "Completed"
    )
    assert api.get("/api/v1/namespaces/default/pods/ok/log")[1] == "fine\n"
    reasons = [r for r, _ in events(api, "ok")]
    for reason in ("Scheduled", "Pulling", "Pulled", "Created", "Started"):
        assert reason in reasons


def test_failed_containers_restart_with_back_off(cluster):
    api = Api(cluster.url)
    run_pod(api, "flaky", "import sys; sys.exit(1)", restart="OnFailure")
    wait_for(lambda: pod(api, "flaky")["status"]["containerStatuses"][0]["restartCount"] >= 2,
             timeout=20)  # fmt: skip
    assert phase(api, "flaky") == "Running"
    assert any(r == "BackOff" for r, _ in events(api, "flaky"))


def test_pods_see_their_own_address_env_and_volumes(cluster):
    api = Api(cluster.url)
    api.post("/api/v1/namespaces/default/configmaps",
             {"metadata": {"name": "conf"}, "data": {"spark-defaults.conf": "spark.x 1\n"}})  # fmt: skip
    api.post("/api/v1/namespaces/default/secrets",
             {"metadata": {"name": "tok"}, "data": {"token": "czNjcjN0"}})  # fmt: skip
    api.post("/api/v1/namespaces/default/persistentvolumeclaims", claim("data", "1Gi"))
    code = (
        "import os, pathlib; pathlib.Path('/data/seen').write_text(os.environ['POD_IP']);"
        "print(os.environ['POD_NAME'], os.environ['POD_IP'], os.environ['TOKEN'],"
        " os.environ['GREETING'], open('/etc/spark/spark-defaults.conf').read().split()[0])"
    )
    spec = {
        "container": {
            "env": [
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
                {"name": "GREETING", "value": "hello-$(POD_NAME)"},
            ],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/spark"},
                             {"name": "data", "mountPath": "/data"}],
        },
        "volumes": [{"name": "conf", "configMap": {"name": "conf"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    }  # fmt: skip
    run_pod(api, "one", code, **spec)
    wait_for(lambda: phase(api, "one") == "Succeeded")
    run_pod(api, "two", code, **spec)
    wait_for(lambda: phase(api, "two") == "Succeeded")
    one_ip = pod(api, "one")["status"]["podIP"]
    name, ip, token, greeting, conf = api.get("/api/v1/namespaces/default/pods/two/log")[1].split()
    assert (name, token, greeting, conf) == ("two", "s3cr3t", "hello-two", "spark.x")
    assert ip == pod(api, "two")["status"]["podIP"] != one_ip
    volume = api.get("/api/v1/namespaces/default/persistentvolumeclaims/data")[1]["spec"][
        "volumeName"
    ]
    seen = cluster.cluster.kubelet.volume_dir(volume) / "seen"
    assert seen.read_text() == ip  # one claim, written by both pods in turn


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(cluster):
    api = Api(cluster.url)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    polite = "import time; time.sleep(300)"
    run_pod(api, "stubborn", stubborn, terminationGracePeriodSeconds=2)
    run_pod(api, "polite", polite, terminationGracePeriodSeconds=30)
    wait_for(lambda: pid_of(cluster, "stubborn") and pid_of(cluster, "polite")
             and phase(api, "stubborn") == phase(api, "polite") == "Running")  # fmt: skip
    pids = pid_of(cluster, "stubborn"), pid_of(cluster, "polite")
    started = time.monotonic()
    api.delete("/api/v1/namespaces/default/pods/polite")
    api.delete("/api/v1/namespaces/default/pods/stubborn")
    assert pod(api, "stubborn")["metadata"]["deletionTimestamp"]
    wait_for(lambda: api.get("/api/v1/namespaces/default/pods/polite")[0] == 404, timeout=10)
    polite_gone = time.monotonic() - started
    wait_for(lambda: api.get("/api/v1/namespaces/default/pods/stubborn")[0] == 404, timeout=10)
    stubborn_gone = time.monotonic() - started
    assert polite_gone < 1.5, "a process that obeys SIGTERM stops at once"
    assert stubborn_gone >= 2, "one that ignores it is killed only after its grace period"
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} survived its pod")


def test_pods_that_do_not_fit_wait_with_a_reason_and_start_when_room_frees(cluster):
    api = Api(cluster.url)
    big = {"containers": [{"name": "c", "image": "inert/i",
                           "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]}  # fmt: skip
    for name in ("a", "b", "c"):
        api.pod(name, {"app": "big"}, **big)
    wait_for(lambda: sum(phase(api, n) == "Running" for n in "abc") == 2)
    (waiting,) = [n for n in "abc" if phase(api, n) == "Pending"]
    condition = pod(api, waiting)["status"]["conditions"][0]
    assert (condition["reason"], condition["status"]) == ("Unschedulable", "False")
    assert ("FailedScheduling", "0/2 nodes are available: 2 Insufficient cpu.") in events(
        api, waiting
    )
    running = next(n for n in "abc" if n != waiting)
    api.delete(f"/api/v1/namespaces/default/pods/{running}", gracePeriodSeconds="0")
    wait_for(lambda: phase(api, waiting) == "Running", what="the waiting pod to be scheduled")


def test_readiness_probes_and_endpoints(cluster):
    api = Api(cluster.url)
    server = (
        "import os, time, http.server as h; time.sleep(1.5);"
        "h.HTTPServer((os.environ['POD_IP'], 8080), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    run_pod(api, "web", server, restart="Always", container={
        "ports": [{"containerPort": 8080, "name": "http"}],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    })  # fmt: skip
    api.post("/api/v1/namespaces/default/services", {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })  # fmt: skip
    wait_for(lambda: phase(api, "web") == "Running")
    ready = {c["type"]: c["status"] for c in pod(api, "web")["status"]["conditions"]}["Ready"]
    assert ready == "False", "not ready before the server listens"
    wait_for(lambda: {c["type"]: c["status"] for c in pod(api, "web")["status"]["conditions"]}
             ["Ready"] == "True", timeout=15)  # fmt: skip
    ip = pod(api, "web")["status"]["podIP"]
    assert requests.get(f"http://{ip}:8080/", timeout=5).status_code == 200
    endpoints = wait_for(lambda: api.get("/api/v1/namespaces/default/endpoints/web")[1]
                         .get("subsets", [{}])[0].get("addresses"))  # fmt: skip
    assert [a["ip"] for a in endpoints] == [ip]


# -- fault injection -------------------------------------------------------------------------


def test_injected_request_failures_and_latency(cluster):
    api = Api(cluster.url)
    cluster.call(cluster.cluster.fail, "create", "pods", 500, count=2)
    assert api.pod("f")[0] == 500
    code, body = api.pod("f")
    assert (code, body["reason"]) == (500, "InternalError")
    assert api.pod("f")[0] == 201, "only the next two creates fail"
    cluster.call(cluster.cluster.fail, "*", "configmaps", 429, count=1, retry_after=3)
    r = requests.get(cluster.url + "/api/v1/namespaces/default/configmaps", timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert requests.get(cluster.url + "/api/v1/namespaces/default/configmaps", timeout=5).ok
    cluster.call(setattr, cluster.cluster.faults, "latency", 0.5)
    started = time.monotonic()
    api.get("/api/v1/namespaces/default/pods")
    assert time.monotonic() - started >= 0.5
    cluster.call(cluster.cluster.faults.clear)


def test_image_pull_and_crash_faults(cluster):
    api = Api(cluster.url)
    cluster.call(cluster.cluster.fail_image, "registry.example/broken*", "pull")
    cluster.call(cluster.cluster.fail_image, "local/crash*", "crash")
    api.pod("nopull", containers=[{"name": "c", "image": "registry.example/broken:1"}])
    api.pod("crash", containers=[{"name": "c", "image": "local/crash"}])
    wait_for(lambda: "ErrImagePull" in str(pod(api, "nopull")["status"].get("containerStatuses")))
    assert phase(api, "nopull") == "Pending"
    assert any(r == "Failed" and "Failed to pull image" in m for r, m in events(api, "nopull"))
    wait_for(lambda: pod(api, "crash")["status"]["containerStatuses"][0]["restartCount"] >= 1)
    assert any(r == "BackOff" for r, _ in events(api, "crash"))


def test_a_lost_node_fails_its_pods_and_kills_their_processes(cluster):
    api = Api(cluster.url)
    run_pod(api, "doomed", "import time; time.sleep(300)")
    wait_for(lambda: phase(api, "doomed") == "Running" and pid_of(cluster, "doomed"))
    pid = pid_of(cluster, "doomed")
    node = pod(api, "doomed")["spec"]["nodeName"]
    cluster.call(cluster.cluster.remove_node, node)
    wait_for(lambda: phase(api, "doomed") == "Failed")
    assert pod(api, "doomed")["status"]["reason"] == "NodeLost"
    assert api.get(f"/api/v1/nodes/{node}")[0] == 404
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z")  # fmt: skip


def test_containers_of_a_pod_share_its_address_and_get_their_working_directory(cluster):
    api = Api(cluster.url)
    serve = ("import http.server as h, os; h.HTTPServer((os.environ['IP'], 9000),"
             " h.SimpleHTTPRequestHandler).serve_forever()")  # fmt: skip
    ask = ("import os, time, urllib.request as u\n"
           "for _ in range(100):\n"
           "    try:\n"
           "        print(u.urlopen('http://' + os.environ['IP'] + ':9000/').status, os.getcwd()); break\n"
           "    except OSError: time.sleep(0.1)\n")  # fmt: skip
    ip_env = [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    status, body = api.pod("pair", {"app": "pair"}, restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
        containers=[
            {"name": "server", "image": "local/python", "command": ["python", "-c", serve],
             "env": ip_env},
            {"name": "client", "image": "local/python", "command": ["python", "-c", ask],
             "env": ip_env, "workingDir": "/work",
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        ])  # fmt: skip
    assert status == 201, body
    wait_for(lambda: "terminated" in str(pod(api, "pair")["status"].get("containerStatuses")))
    code, cwd = api.get("/api/v1/namespaces/default/pods/pair/log", container="client")[1].split()
    assert code == "200"
    assert cwd.endswith("/volumes/work")
    api.delete("/api/v1/namespaces/default/pods/pair", gracePeriodSeconds="0")

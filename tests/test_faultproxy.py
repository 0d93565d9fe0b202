"""The fault proxy (aglais_hub.testing.faultproxy) in front of the real kube-apiserver,
used with a real ServiceAccount token: watches stream through, RBAC is the API
server's, and its rules fail, throttle or delay exactly the requests they name.

Cluster tests use the module's DevCluster (conftest `dev`; it starts the fault proxy);
without the control-plane binaries they skip. The parts at the end need no cluster.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import uuid

import pytest

from aglais_hub.testing.faultproxy import FaultProxyError, Rule, RuleError, classify
from aglais_hub.testing.hubaccount import HubAccount
from aglais_hub.testing.nodeagent.client import Credentials, request_sync
from tests.test_controlplane import eventually

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def cluster_test(test):  # noqa: ANN001, ANN201
    return pytest.mark.e2e(pytest.mark.controlplane(pytest.mark.timeout(120)(test)))


class Identity:
    """A ServiceAccount that may work with configmaps and pods in two namespaces (and
    nothing else), its token, and raw requests with that token."""

    def __init__(self, dev):
        self.dev = dev
        self.admin = Credentials.from_kubeconfig(dev.kubeconfig)
        suffix = uuid.uuid4().hex[:6]
        self.ns_a, self.ns_b = f"fp-a-{suffix}", f"fp-b-{suffix}"
        self.user = f"system:serviceaccount:{self.ns_a}:tester"
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"fp-tester-{suffix}"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps", "pods"],
                    "verbs": [
                        "get",
                        "list",
                        "watch",
                        "create",
                        "update",
                        "patch",
                        "delete",
                        "deletecollection",
                    ],
                }
            ],
        }
        self._admin("POST", f"{RBAC}/clusterroles", role)
        for ns in (self.ns_a, self.ns_b):
            self._admin("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            self._admin(
                "POST",
                f"{RBAC}/namespaces/{ns}/rolebindings",
                {
                    "metadata": {"name": "tester"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role["metadata"]["name"],
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "tester", "namespace": self.ns_a}
                    ],
                },
            )
        self._admin(
            "POST",
            f"/api/v1/namespaces/{self.ns_a}/serviceaccounts",
            {"metadata": {"name": "tester"}},
        )
        answer = self._admin(
            "POST",
            f"/api/v1/namespaces/{self.ns_a}/serviceaccounts/tester/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        self.token = answer["status"]["token"]
        self.kubeconfig = HubAccount(dev).write_kubeconfig(self.token, f"fp-tester-{suffix}")
        self.proxied = dev.through_faults(self.kubeconfig)
        self.context = ssl.create_default_context(cafile=str(dev.ca_file))

    def _admin(self, method: str, path: str, body: object = None) -> dict:
        return request_sync(self.admin, method, path, body)

    def connection(self, server: str | None = None, timeout: float = 30):  # noqa: ANN201
        host, port = (server or self.dev.fault_proxy_server).removeprefix("https://").split(":")
        return http.client.HTTPSConnection(host, int(port), context=self.context, timeout=timeout)

    def call(
        self, method: str, path: str, body: object = None, server: str | None = None
    ) -> tuple[int, http.client.HTTPMessage, dict]:
        """One request with the token (through the proxy unless ``server``)."""
        connection = self.connection(server)
        try:
            connection.request(
                method,
                path,
                json.dumps(body) if body is not None else None,
                {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
            answer = connection.getresponse()
            return answer.status, answer.headers, json.loads(answer.read() or b"{}")
        finally:
            connection.close()

    def configmap(self, namespace: str, name: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"k": "v"},
        }


@pytest.fixture(scope="module")
def tester(dev) -> Identity:
    return Identity(dev)


@pytest.fixture(autouse=True)
def _no_rules_left(request):
    """Every test starts and ends with no rule in force."""
    if "dev" not in request.fixturenames:
        yield
        return
    dev = request.getfixturevalue("dev")
    dev.faults.clear()
    yield
    dev.faults.clear()


@cluster_test
def test_a_watch_streams_each_event_as_it_happens(dev, tester):
    status, _, listing = tester.call("GET", f"/api/v1/namespaces/{tester.ns_a}/configmaps")
    assert status == 200
    connection = tester.connection(timeout=60)
    connection.request(
        "GET",
        f"/api/v1/namespaces/{tester.ns_a}/configmaps?watch=true&"
        f"resourceVersion={listing['metadata']['resourceVersion']}&timeoutSeconds=45",
        headers={"Authorization": f"Bearer {tester.token}"},
    )
    answer = connection.getresponse()
    assert answer.status == 200
    arrived: list[tuple[float, str, str]] = []

    def read() -> None:
        buffer = b""
        try:
            while chunk := answer.read1(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = json.loads(line)
                    arrived.append(
                        (time.monotonic(), event["type"], event["object"]["metadata"]["name"])
                    )
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the test has closed the connection

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for name in ("first", "second"):
            sent = time.monotonic()
            status, _, _ = tester.call(
                "POST",
                f"/api/v1/namespaces/{tester.ns_a}/configmaps",
                tester.configmap(tester.ns_a, name),
            )
            assert status == 201
            got = eventually(
                lambda n=name: [a for a in arrived if a[2] == n], f"{name} event", timeout=10
            )
            ((when, kind, _),) = got
            assert kind == "ADDED"
            assert when - sent < 3  # as it happened, not when the watch ended (45s)
    finally:
        connection.sock.shutdown(socket.SHUT_RDWR)  # the reader holds the file: wake it
        connection.close()
        reader.join(10)
    assert not reader.is_alive()
    assert dev.faults.requests()[-3]["verb"] == "watch"  # the proxy saw it as a watch


@cluster_test
def test_rbac_is_decided_by_the_api_server_for_the_token(dev, tester):
    path = f"/api/v1/namespaces/{tester.ns_a}/secrets"
    status, _, body = tester.call("GET", path)
    direct_status, _, direct = tester.call("GET", path, server=dev.server)
    assert (status, direct_status) == (403, 403)
    assert body["reason"] == "Forbidden" and body["message"] == direct["message"]
    assert f'User "{tester.user}" cannot list resource "secrets"' in body["message"]
    assert HubAccount(dev).who_am_i(tester.proxied) == tester.user
    assert tester.call("GET", f"/api/v1/namespaces/{tester.ns_a}/configmaps")[0] == 200
    assert tester.call("GET", path)[0] == 403  # no rule took any of these
    assert all(r["rule"] is None for r in dev.faults.requests()[-4:])


@cluster_test
def test_a_500_rule_fires_count_times_then_requests_pass(dev, tester):
    path = f"/api/v1/namespaces/{tester.ns_a}/configmaps"
    rule = dev.faults.add("list", "configmaps", 500, count=2)
    for _ in range(2):
        status, _, body = tester.call("GET", path)
        assert status == 500
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "InternalError", 500)
    assert tester.call("GET", path)[0] == 200
    assert dev.faults.fired(rule) == 2
    (listed,) = dev.faults.rules()
    assert (listed["id"], listed["fired"], listed["count"]) == (rule, 2, 2)


@cluster_test
def test_a_429_rule_carries_retry_after(dev, tester):
    dev.faults.add("create", "configmaps", 429, retry_after=7, count=None)
    name = f"throttled-{uuid.uuid4().hex[:6]}"
    for _ in range(3):  # until cleared
        status, headers, body = tester.call(
            "POST",
            f"/api/v1/namespaces/{tester.ns_a}/configmaps",
            tester.configmap(tester.ns_a, name),
        )
        assert status == 429 and headers["Retry-After"] == "7"
        assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 7
    assert tester.call("GET", f"/api/v1/namespaces/{tester.ns_a}/configmaps/{name}")[0] == 404
    assert dev.faults.clear() == 1
    status, _, _ = tester.call(
        "POST", f"/api/v1/namespaces/{tester.ns_a}/configmaps", tester.configmap(tester.ns_a, name)
    )
    assert status == 201


@cluster_test
def test_a_latency_rule_delays_then_forwards(dev, tester):
    path = f"/api/v1/namespaces/{tester.ns_a}/configmaps"
    rule = dev.faults.add("list", "configmaps", delay=1.5, count=1)
    started = time.monotonic()
    status, _, body = tester.call("GET", path)
    took = time.monotonic() - started
    assert status == 200 and body["kind"] == "ConfigMapList"  # the API server's answer
    assert took >= 1.5
    started = time.monotonic()
    assert tester.call("GET", path)[0] == 200
    assert time.monotonic() - started < 1  # count=1: the next one is not held
    assert dev.faults.fired(rule) == 1


@cluster_test
def test_rules_match_only_their_verb_resource_and_namespace(dev, tester):
    a, b = tester.ns_a, tester.ns_b
    rule = dev.faults.add("create", "configmaps", 503, namespace=b, count=None)
    status_rule = dev.faults.add("get", "pods/status", 409, count=None)
    name = f"m-{uuid.uuid4().hex[:6]}"
    assert (
        tester.call("POST", f"/api/v1/namespaces/{a}/configmaps", tester.configmap(a, name))[0]
        == 201
    )  # another namespace
    assert tester.call("GET", f"/api/v1/namespaces/{b}/configmaps")[0] == 200  # another verb
    assert (
        tester.call(
            "POST",
            f"/api/v1/namespaces/{b}/pods",
            {
                "metadata": {"name": "x"},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        )[0]
        == 201
    )  # another resource
    assert tester.call("GET", f"/api/v1/namespaces/{b}/pods/x")[0] == 200  # not the subresource
    status, _, body = tester.call(
        "POST", f"/api/v1/namespaces/{b}/configmaps", tester.configmap(b, name)
    )
    assert status == 503 and body["reason"] == "ServiceUnavailable"
    assert tester.call("GET", f"/api/v1/namespaces/{b}/pods/x/status")[0] == 409
    assert (dev.faults.fired(rule), dev.faults.fired(status_rule)) == (1, 1)
    dev.faults.remove(rule)
    assert [r["id"] for r in dev.faults.rules()] == [status_rule]
    assert (
        tester.call("POST", f"/api/v1/namespaces/{b}/configmaps", tester.configmap(b, name))[0]
        == 201
    )
    tester.call("DELETE", f"/api/v1/namespaces/{b}/pods/x")


@cluster_test
def test_an_invalid_rule_is_refused_with_the_problem_named(dev):
    cases = [
        ({"verb": "fetch", "resource": "pods", "status": 500}, "verb"),
        ({"verb": "get", "resource": "", "status": 500}, "resource"),
        ({"verb": "get", "resource": "pods", "status": 200}, "status"),
        ({"verb": "get", "resource": "pods"}, "a status"),
        ({"verb": "get", "resource": "pods", "status": 500, "count": 0}, "count"),
        ({"verb": "get", "resource": "pods", "delay": -1}, "delay"),
        ({"verb": "get", "resource": "pods", "retry_after": 3, "delay": 1}, "retry_after"),
        ({"verb": "get", "resource": "pods", "status": 500, "colour": "red"}, "colour"),
    ]
    for rule, named in cases:
        with pytest.raises(FaultProxyError) as refused:
            dev.faults._call("POST", "/faults", rule)
        assert refused.value.status == 400 and named in str(refused.value), rule
    with pytest.raises(FaultProxyError) as refused:
        dev.faults._call("POST", "/faults", "[not json")
    assert refused.value.status == 400
    with pytest.raises(FaultProxyError) as missing:
        dev.faults.remove("f-none")
    assert missing.value.status == 404
    assert dev.faults.rules() == []


@cluster_test
def test_the_official_client_lists_creates_and_watches_through_the_proxy(dev, tester):
    from kubernetes import client, config, watch

    api = config.new_client_from_config(str(tester.proxied))
    try:
        core = client.CoreV1Api(api)
        assert api.configuration.host == dev.fault_proxy_server
        core.create_namespaced_config_map(tester.ns_a, {"metadata": {"name": "official"}})
        listed = core.list_namespaced_config_map(tester.ns_a)
        assert "official" in [c.metadata.name for c in listed.items]
        seen = []
        watcher = watch.Watch()
        stream = watcher.stream(
            core.list_namespaced_config_map,
            tester.ns_a,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=20,
        )
        threading.Timer(
            0.5,
            lambda: core.patch_namespaced_config_map(
                "official", tester.ns_a, {"data": {"changed": "yes"}}
            ),
        ).start()
        for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            watcher.stop()
        assert seen == [("MODIFIED", "official")]
        dev.faults.add("list", "configmaps", 500, namespace=tester.ns_a)
        with pytest.raises(client.ApiException) as failed:
            core.list_namespaced_config_map(tester.ns_a)
        assert failed.value.status == 500 and "InternalError" in failed.value.body
        assert core.list_namespaced_config_map(tester.ns_a).items
    finally:
        api.close()


def test_a_client_certificate_kubeconfig_is_refused(tmp_path):
    from aglais_hub.testing.devcluster import DevCluster, DevClusterError

    config = tmp_path / "cert.kubeconfig"
    user = {"client-certificate-data": "eA==", "client-key-data": "eA=="}
    config.write_text(json.dumps({"clusters": [], "users": [{"name": "u", "user": user}]}))
    dev = DevCluster.__new__(DevCluster)  # no cluster needed to refuse it
    dev._fault_state = {"server": "https://127.0.0.1:1", "control": "http://127.0.0.1:2"}
    with pytest.raises(DevClusterError, match="client certificate"):
        dev.through_faults(config)


# -- the parts, without a cluster -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/ns/pods", "", ("list", "pods", "ns", None)),
        ("GET", "/api/v1/namespaces/ns/pods", "watch=true", ("watch", "pods", "ns", None)),
        ("GET", "/api/v1/watch/namespaces/ns/pods", "", ("watch", "pods", "ns", None)),
        ("GET", "/api/v1/namespaces/ns/pods/p", "", ("get", "pods", "ns", "p")),
        ("PATCH", "/api/v1/namespaces/ns/pods/p/status", "", ("patch", "pods/status", "ns", "p")),
        ("POST", "/api/v1/namespaces/ns/pods/p/binding", "", ("create", "pods/binding", "ns", "p")),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/d",
            "",
            ("update", "deployments", "ns", "d"),
        ),
        ("DELETE", "/api/v1/namespaces/ns/configmaps/c", "", ("delete", "configmaps", "ns", "c")),
        (
            "DELETE",
            "/api/v1/namespaces/ns/configmaps",
            "",
            ("deletecollection", "configmaps", "ns", None),
        ),
        ("GET", "/api/v1/namespaces", "", ("list", "namespaces", None, None)),
        ("GET", "/api/v1/namespaces/ns", "", ("get", "namespaces", "ns", "ns")),
        (
            "PUT",
            "/api/v1/namespaces/ns/finalize",
            "",
            ("update", "namespaces/finalize", "ns", "ns"),
        ),
        ("GET", "/api/v1/nodes", "watch=1", ("watch", "nodes", None, None)),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "",
            ("create", "selfsubjectaccessreviews", None, None),
        ),
    ],
)
def test_requests_are_classified_as_the_api_server_does(method, path, query, expected):
    info = classify(method, path, query)
    assert (info.verb, info.resource, info.namespace, info.name) == expected


@pytest.mark.parametrize("path", ["/version", "/readyz", "/openapi/v2", "/api", "/apis/apps"])
def test_non_resource_paths_match_no_rule(path):
    assert classify("GET", path) is None


def test_a_rule_counts_and_matches_by_namespace():
    rule = Rule.parse(
        {"verb": "*", "resource": "pods", "namespace": "a", "status": 500, "count": 2}
    )
    here, there = (
        classify("GET", "/api/v1/namespaces/a/pods"),
        classify("GET", "/api/v1/namespaces/b/pods"),
    )
    assert not rule.matches(there)
    assert rule.matches(here)
    rule.fired = 2
    assert not rule.matches(here)
    with pytest.raises(RuleError, match="verb"):
        Rule.parse({"verb": "GET", "resource": "pods", "status": 500})


@pytest.mark.e2e
@pytest.mark.controlplane
@pytest.mark.timeout(120)
def test_the_dev_cluster_command_starts_the_proxy_with_a_flag(cluster_bin, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from aglais_hub.testing.devcluster_cli import READY_LINE, STATE_FILE
    from aglais_hub.testing.faultproxy import FaultProxy

    root, output = tmp_path / "root", tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["AGLAIS_CLUSTER_BIN"] = str(cluster_bin)
    with output.open("wb") as out:
        command = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aglais_hub.cli",
                "dev-cluster",
                "--nodes",
                "1",
                "--root",
                str(root),
                "--fault-proxy",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        text = eventually(
            lambda: READY_LINE in (t := output.read_text()) and t, "the ready line", timeout=90
        )
        facts = json.loads((root / STATE_FILE).read_text())
        assert f"fault proxy: {facts['fault_proxy']}" in text
        assert f"curl -X POST {facts['fault_control']}/faults -d" in text
        rule = FaultProxy(facts["fault_control"]).add("list", "pods", 500)
        assert FaultProxy(facts["fault_control"]).fired(rule) == 0
        proxy_pid = facts["pids"]["fault-proxy"]
        command.send_signal(signal.SIGTERM)
        assert command.wait(30) == 0
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proxy_pid, 0)

"""Services on the testing cluster: our service proxy (aglais_hub.testing.serviceproxy)
forwards ClusterIPs to ready pods and keeps the DNS file from which pod processes (Python
and Node) and tests on the host resolve Service names (aglais_hub.testing.clusterdns).
One DevCluster serves the module; each test works in a namespace of its own."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.parse
import urllib.request

import pytest

import tests.test_controlplane as controlplane_tests
from aglais_hub.testing import clusterdns
from aglais_hub.testing.clusterdns.resolver import lookup
from aglais_hub.testing.devcluster import service_cidr
from tests.test_controlplane import eventually

namespace = controlplane_tests.namespace

# answers every GET with the pod's name, so a test sees which backend answered
SERVER = """
import http.server, os
class Name(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["HOSTNAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), Name).serve_forever()
"""
PY_CLIENT = """
import sys, urllib.request
for url in sys.argv[1:]:
    print(url, urllib.request.urlopen(url, timeout=10).read().decode(), flush=True)
"""
NODE_CLIENT = """
const http = require('http');
const urls = process.argv.slice(1);
(async () => { for (const url of urls) { await new Promise((ok, fail) => {
  http.get(url, (res) => { let body = ''; res.on('data', (d) => body += d);
    res.on('end', () => { console.log(url, body); ok(); }); }).on('error', fail); }); } })()
  .catch((e) => { console.log('failed', e.message); process.exit(2); });
"""


def cluster_test(test):  # noqa: ANN001, ANN201
    return pytest.mark.e2e(pytest.mark.controlplane(test))


def _core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


def _labels(app: str) -> dict:
    return {"app": app}


def _web_template(app: str) -> dict:
    return {
        "metadata": {"labels": _labels(app)},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "local/python",
                    "command": ["python", "-c", SERVER],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                }
            ]
        },
    }


def _deploy(api, namespace: str, app: str, replicas: int) -> None:
    from kubernetes import client

    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": app},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": _labels(app)},
                "template": _web_template(app),
            },
        },
    )


def _service(api, namespace: str, name: str, app: str, headless: bool = False):  # noqa: ANN202
    spec = {"selector": _labels(app), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    if headless:
        spec["clusterIP"] = "None"
    return _core(api).create_namespaced_service(
        namespace, {"metadata": {"name": name}, "spec": spec}
    )


def _ready_pods(api, namespace: str, app: str, count: int) -> dict[str, str]:
    """name → pod IP once exactly ``count`` pods of ``app`` are Ready."""

    def ready() -> dict[str, str] | None:
        pods = _core(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
        found = {
            p.metadata.name: p.status.pod_ip
            for p in pods
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }
        return found if len(found) == count else None

    return eventually(ready, f"{count} ready pods of {app}", timeout=60)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def _answers(url: str, times: int = 12) -> list[str]:
    return [_get(url) for _ in range(times)]  # urllib opens a new connection each time


def _run_to_end(
    api,
    dev,
    namespace: str,
    name: str,
    image: str,
    command: list[str],
    env: list[dict] | None = None,
) -> str:
    container = {"name": "main", "image": image, "command": command, "env": env or []}
    _core(api).create_namespaced_pod(
        namespace,
        {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [container]}},
    )

    def finished() -> str | None:
        phase = _core(api).read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = eventually(finished, f"pod {name} to finish", timeout=60)
    log = dev.read_log(namespace, name, "main")
    assert phase == "Succeeded", log
    return log


@pytest.fixture
def other_namespace(api):  # noqa: ANN001, ANN201
    yield from controlplane_tests.fresh_namespace(api, "o")


def test_names_resolve_by_a_pods_rules():
    services = {
        "ns/web": {"clusterIP": "127.96.1.2", "ips": ["127.10.0.5"]},
        "ns/db": {"clusterIP": None, "ips": ["127.10.0.7", "127.10.0.8"]},
    }
    for name in (
        "web.ns",
        "web.ns.svc",
        "web.ns.svc.cluster.local",
        "web.ns.svc.cluster.local.",
        "WEB.ns.svc",
    ):
        assert lookup(services, name) == ["127.96.1.2"], name
    assert lookup(services, "web", "ns") == ["127.96.1.2"]
    assert lookup(services, "web") is None  # on the host: no namespace to search
    assert lookup(services, "web", "other") is None
    assert lookup(services, "db.ns.svc") == ["127.10.0.7", "127.10.0.8"]
    assert lookup(services, "nope.ns.svc.cluster.local") == []  # NXDOMAIN, not the host's DNS
    assert lookup(services, "example.org", "ns") is None
    assert lookup(services, "127.0.0.1", "ns") is None


@cluster_test
def test_a_service_forwards_to_both_backends_from_the_host(api, dev, namespace):
    _deploy(api, namespace, "web", 2)
    service = _service(api, namespace, "web", "web")
    pods = _ready_pods(api, namespace, "web", 2)
    dev.wait_service(namespace, "web")
    url = dev.service_url(namespace, "web", "http")
    assert url == f"http://{service.spec.cluster_ip}:80"
    assert ipaddress.ip_address(service.spec.cluster_ip) in ipaddress.ip_network(
        service_cidr(dev.address_base)
    )  # this cluster's own loopback range
    answers = _answers(url)
    assert set(answers) == set(pods)  # round robin over new connections: both answer
    with clusterdns.resolving(dev.dns_file):
        assert _get(f"http://web.{namespace}.svc/") in pods
        assert socket.gethostbyname(f"web.{namespace}.svc.cluster.local") == service.spec.cluster_ip
    hosts = clusterdns.hosts_lines(dev.dns_file, namespace)
    assert hosts == [
        f"{service.spec.cluster_ip} web.{namespace}.svc.cluster.local "
        f"web.{namespace}.svc web.{namespace}"
    ]
    with pytest.raises(OSError):  # no longer patched
        socket.getaddrinfo(f"web.{namespace}.svc.cluster.local", 80)


@cluster_test
def test_a_pod_in_another_namespace_reaches_it_by_name(api, dev, namespace, other_namespace):
    _deploy(api, namespace, "web", 1)
    _service(api, namespace, "web", "web")
    (pod,) = _ready_pods(api, namespace, "web", 1)
    dev.wait_service(namespace, "web")
    urls = [
        f"http://web.{namespace}.svc/",
        f"http://web.{namespace}.svc.cluster.local/",
        f"http://web.{namespace}/",
    ]
    python = _run_to_end(
        api, dev, other_namespace, "py", "local/python", ["python", "-c", PY_CLIENT, *urls]
    )
    node = _run_to_end(
        api, dev, other_namespace, "node", "local/node", ["node", "-e", NODE_CLIENT, *urls]
    )
    for log in (python, node):
        assert [line.split() for line in log.splitlines()] == [[url, pod] for url in urls], log
    # the bare name is the pod's own namespace's: there it resolves
    same = _run_to_end(
        api, dev, namespace, "bare", "local/node", ["node", "-e", NODE_CLIENT, "http://web/"]
    )
    assert same.split() == ["http://web/", pod]


@cluster_test
def test_a_pod_started_after_a_service_has_its_links(api, dev, namespace):
    service = _service(api, namespace, "web-api", "nothing")
    ip = service.spec.cluster_ip
    script = "import os\nfor k in sorted(os.environ):\n    print(k + '=' + os.environ[k])"
    log = _run_to_end(
        api,
        dev,
        namespace,
        "env",
        "local/python",
        ["python", "-c", script],
        [{"name": "WEB_API_SERVICE_PORT", "value": "explicit"}],
    )
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert env["WEB_API_SERVICE_HOST"] == ip
    assert env["WEB_API_SERVICE_PORT"] == "explicit"  # the pod's own env wins
    assert env["WEB_API_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_API_PORT"] == f"tcp://{ip}:80"
    assert env["WEB_API_PORT_80_TCP"] == f"tcp://{ip}:80"
    assert env["WEB_API_PORT_80_TCP_PROTO"] == "tcp"
    assert env["WEB_API_PORT_80_TCP_PORT"] == "80"
    assert env["WEB_API_PORT_80_TCP_ADDR"] == ip
    assert env["KUBERNETES_SERVICE_HOST"] == urllib.parse.urlsplit(dev.server).hostname


@cluster_test
def test_a_headless_service_resolves_to_its_pods(api, dev, namespace):
    _deploy(api, namespace, "db", 2)
    _service(api, namespace, "db", "db", headless=True)
    pods = _ready_pods(api, namespace, "db", 2)
    dev.wait_service(namespace, "db")
    with clusterdns.resolving(dev.dns_file, namespace):
        found = {info[4][0] for info in socket.getaddrinfo("db", 8080, type=socket.SOCK_STREAM)}
        assert found == set(pods.values())
        assert _get(f"http://db.{namespace}.svc:8080/") in pods  # straight to a pod


@cluster_test
def test_without_backends_connections_fail_fast_and_a_new_one_is_picked_up(api, dev, namespace):
    from kubernetes import client

    _deploy(api, namespace, "web", 1)
    _service(api, namespace, "web", "web")
    _ready_pods(api, namespace, "web", 1)
    dev.wait_service(namespace, "web")
    url = dev.service_url(namespace, "web", 80)
    client.AppsV1Api(api).delete_namespaced_deployment("web", namespace)
    eventually(lambda: not _core(api).list_namespaced_pod(namespace).items, "the pods to go")

    def refused() -> bool:
        started = time.monotonic()
        try:
            _get(url)
        except (ConnectionError, http.client.RemoteDisconnected, urllib.error.URLError):
            assert time.monotonic() - started < 1  # at once, not a timeout
            return True
        return False

    eventually(refused, "connections to be refused", timeout=20)
    _core(api).create_namespaced_pod(
        namespace, {**_web_template("web"), "metadata": {"name": "later", "labels": _labels("web")}}
    )
    dev.wait_service(namespace, "web")
    assert _answers(url, 3) == ["later"] * 3


@cluster_test
def test_deleting_the_service_closes_its_listener(api, dev, namespace):
    service = _service(api, namespace, "web", "web")
    ip = service.spec.cluster_ip

    def listening() -> bool:
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((ip, 80)) == 0

    eventually(listening, "the listener")
    _core(api).delete_namespaced_service("web", namespace)
    eventually(lambda: not listening(), "the listener to close", timeout=20)
    with clusterdns.resolving(dev.dns_file):
        eventually(lambda: lookup_gone(f"web.{namespace}.svc"), "the name to go", timeout=20)


def lookup_gone(name: str) -> bool:
    try:
        socket.getaddrinfo(name, 80)
    except socket.gaierror:
        return True
    return False


@cluster_test
def test_the_kubernetes_service_reaches_the_api_server(dev):
    from aglais_hub.testing.nodeagent.client import Credentials

    context = Credentials.from_kubeconfig(dev.kubeconfig).ssl_context()
    with clusterdns.resolving(dev.dns_file):
        # the API server's certificate names kubernetes.default.svc and its ClusterIP
        with urllib.request.urlopen(
            "https://kubernetes.default.svc/version", timeout=5, context=context
        ) as answer:
            assert answer.status == 200 and b"gitVersion" in answer.read()

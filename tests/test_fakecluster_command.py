"""`aglais-hub fake-cluster`: the testing cluster as a command, with faults from flags."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests
import yaml

from aglais_hub.testing.platform import free_port
from aglais_hub.testing.rawapi import wait_for


def test_fake_cluster_command_serves_writes_a_kubeconfig_and_injects_faults(tmp_path):
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "aglais_hub.cli", "fake-cluster", "--port", str(port),
         "--nodes", "3", "--node-cpu", "2", "--kubeconfig", str(kubeconfig),
         "--fail", "list:pods:503:1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert "serving the Kubernetes API at http://127.0.0.1:" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == url
        pods = f"{url}/api/v1/namespaces/default/pods"
        assert requests.get(pods, timeout=5).status_code == 503
        assert requests.get(pods, timeout=5).json()["kind"] == "PodList"
        nodes = wait_for(lambda: requests.get(f"{url}/api/v1/nodes", timeout=5).json()["items"])
        assert [n["status"]["allocatable"]["cpu"] for n in nodes] == ["2", "2", "2"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0

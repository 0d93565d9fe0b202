"""The Helm chart installed for real on the testing cluster (ours: the driver; helm, the
chart and the cluster are the real ones).

``ChartRelease(cluster, values=[...])`` runs the real ``helm`` binary (``make helm``)
against the cluster's admin kubeconfig: ``install()`` creates the release namespace
labelled for Pod Security ``restricted`` (as docs/deploy.md tells admins to) and
``helm install --wait``s the chart; ``upgrade(*values, sets=...)`` and ``uninstall()`` do
what they say. ``url`` is the proxy's public Service as users reach it
(no Ingress controller runs on this cluster: the Service is the front door), and
``logins`` the development identity provider's users.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..chart import CHART, PROJECT_ROOT, find_helm
from .devcluster import SAMPLE_CATALOGUE_MOUNT, DevCluster
from .nodeagent.client import ApiError, Credentials, request_sync

DEV_VALUES = PROJECT_ROOT / "config" / "devcluster-chart-values.yaml"
# what docs/deploy.md tells admins to label the release namespace with
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "restricted"}


class ChartError(RuntimeError):
    """helm failed; the message is helm's own output."""


@dataclass
class ChartRelease:
    cluster: DevCluster
    values: list[Path] = field(default_factory=lambda: [DEV_VALUES])
    release: str = "aglais"
    namespace: str = "aglais"
    timeout: str = "5m"

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        helm = find_helm()
        if helm is None:
            raise ChartError("helm not found: run `make helm`")
        command = [
            helm,
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "--namespace",
            self.namespace,
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise ChartError(f"helm {' '.join(args[:2])} failed:\n{done.stderr or done.stdout}")
        return done

    def _values_args(self, extra: tuple[Path, ...], sets: dict[str, str]) -> list[str]:
        args = [a for path in (*self.values, *extra) for a in ("--values", str(path))]
        return args + [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]

    def create_namespace(self) -> None:
        """The release namespace, labelled for Pod Security restricted (idempotent)."""
        credentials = Credentials.from_kubeconfig(self.cluster.kubeconfig)
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": POD_SECURITY},
        }
        try:
            request_sync(credentials, "POST", "/api/v1/namespaces", body)
        except ApiError as error:
            if error.status != 409:
                raise
            request_sync(
                credentials,
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}",
                {"metadata": {"labels": POD_SECURITY}},
                content_type="application/merge-patch+json",
            )

    def _chart(self, verb: str, values: tuple[Path, ...], sets: dict[str, str] | None) -> str:
        args = ["--wait", "--timeout", self.timeout, *self._values_args(values, sets or {})]
        return self.helm(verb, self.release, str(CHART), *args).stdout

    def install(self, *values: Path, sets: dict[str, str] | None = None) -> str:
        self.create_namespace()
        return self._chart("install", values, sets)

    def upgrade(self, *values: Path, sets: dict[str, str] | None = None) -> str:
        return self._chart("upgrade", values, sets)

    def uninstall(self) -> str:
        return self.helm("uninstall", self.release, "--wait", "--timeout", self.timeout).stdout

    def merged_values(self) -> dict:
        merged: dict = {}
        for path in self.values:
            _merge(merged, yaml.safe_load(path.read_text()) or {})
        return merged

    @property
    def url(self) -> str:
        """The hub's public URL (hub.publicUrl of the values: the proxy's Service by name)."""
        return self.merged_values()["hub"]["publicUrl"].rstrip("/") + "/"

    @property
    def logins(self) -> dict[str, dict]:
        from ..config import load_schema

        users = self.merged_values().get("devIdentityProvider", {}).get("users")
        if users is None:
            schema = load_schema()["properties"]["devIdentityProvider"]
            users = schema["properties"]["users"]["default"]
        return users


def chart_cluster(root: Path, bin_dir: Path) -> DevCluster:
    """The testing cluster the chart goes on: two node agents roomy enough for the
    release, its users' servers and their executors, without the fault proxy (a context
    manager, not started)."""
    return DevCluster(
        root, nodes=2, node_cpu="16", node_memory="64Gi", bin_dir=bin_dir, fault_proxy=False
    )


# the size the benchmark books: its runner drives JupyterLab, the tiers' default is Zeppelin
LAB_SIZE = "lab"


def examples_values(cluster: DevCluster, power_users: tuple[str, ...] = ()) -> dict:
    """Values over DEV_VALUES for running the example suite on the release: the sample
    catalogue on a read-only data volume where production mounts the real ones
    (``spawner.catalogues``, which the notebooks read), a JupyterLab size ``lab`` with one
    two-core executor to book, and ``power_users`` added to the development identity provider in
    the power tier (password: the name), for benchmark runs that need users of their own."""
    values: dict = {
        "spawner": {
            "catalogues": SAMPLE_CATALOGUE_MOUNT,
            "kubernetes": {"dataVolumes": [cluster.share_sample_catalogue()]},
        },
        "sizes": {
            LAB_SIZE: {
                "displayName": "JupyterLab",
                "description": "JupyterLab with one executor of two cores (the benchmark's).",
                "executors": 1,
                # two task slots, as the suite's expected seconds assume (local[2])
                "executorCores": 2,
                "flavour": "jupyterlab",
            }
        },
    }
    if power_users:
        values["devIdentityProvider"] = {
            "users": {
                name: {"password": name, "groups": ["users", "power"], "name": name.title()}
                for name in power_users
            }
        }
    return values


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value

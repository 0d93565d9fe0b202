"""The API resources the testing cluster serves, and their validation rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aglais_hub.quantity import parse as parse_quantity

from .errors import ApiError


@dataclass(frozen=True)
class Resource:
    """One API resource: where it lives and what it is called."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ("status", "finalize"), ("ns",)),
    Resource("", "v1", "nodes", "Node", False, ("status",), ("no",)),
    Resource("", "v1", "pods", "Pod", True, ("status", "log"), ("po",)),
    Resource("", "v1", "services", "Service", True, ("status",), ("svc",)),
    Resource("", "v1", "endpoints", "Endpoints", True, (), ("ep",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, (), ("cm",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, (), ("sa",)),
    Resource(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("status",), ("pvc",)
    ),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("status",), ("pv",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, ("status",), ("quota",)),
    Resource("", "v1", "events", "Event", True, (), ("ev",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, (), ("netpol",)),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, (), ("sc",)),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource:
    try:
        return BY_PATH[(group, version, plural)]
    except KeyError:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({plural})"
        ) from None


_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_RBAC_NAME = re.compile(r"^[^/%]+$")


def _name_problem(resource: Resource, name: str) -> str | None:
    if resource.kind in ("Namespace",):
        ok, rule, limit = _LABEL.match(name), "RFC 1123 label", 63
    elif resource.kind == "Service":
        ok, rule, limit = _LABEL_1035.match(name), "RFC 1035 label", 63
    elif resource.group == "rbac.authorization.k8s.io":
        ok, rule, limit = _RBAC_NAME.match(name), "path segment name", 253
    else:
        ok, rule, limit = _SUBDOMAIN.match(name), "RFC 1123 subdomain", 253
    if not ok:
        return (
            f"Invalid value: {name!r}: a lowercase {rule} must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric"
        )
    if len(name) > limit:
        return f"Invalid value: {name!r}: must be no more than {limit} characters"
    return None


def _quantities_problems(path: str, mapping: Any) -> list[tuple[str, str]]:
    problems = []
    for key, value in (mapping or {}).items():
        try:
            parse_quantity(value)
        except ValueError as e:
            problems.append((f"{path}[{key}]", f"Invalid value: {value!r}: {e}"))
    return problems


def validate(resource: Resource, obj: dict[str, Any]) -> None:
    """Raise a 422 Invalid for what the real API server would refuse on write."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        problem = _name_problem(resource, name)
        if problem:
            causes.append(("metadata.name", problem))
    for value in (meta.get("labels") or {}).values():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            causes.append(("metadata.labels", f"Invalid value: {value!r}: a valid label value"))
    kind_rules = _KIND_RULES.get(resource.kind)
    if kind_rules:
        causes.extend(kind_rules(obj))
    if causes:
        raise ApiError.invalid(resource.kind, name, causes)


def _pod_problems(pod: dict) -> list[tuple[str, str]]:
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    causes = []
    if not containers:
        causes.append(("spec.containers", "Required value"))
    seen = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            where = f"spec.{kind}[{i}]"
            if not c.get("name"):
                causes.append((f"{where}.name", "Required value"))
            elif not _LABEL.match(c["name"]):
                causes.append((f"{where}.name", f"Invalid value: {c['name']!r}"))
            elif c["name"] in seen:
                causes.append((f"{where}.name", f"Duplicate value: {c['name']!r}"))
            seen.add(c.get("name"))
            if not c.get("image"):
                causes.append((f"{where}.image", "Required value"))
            resources = c.get("resources") or {}
            causes += _quantities_problems(f"{where}.resources.requests", resources.get("requests"))
            causes += _quantities_problems(f"{where}.resources.limits", resources.get("limits"))
            for port in c.get("ports") or []:
                if not 0 < int(port.get("containerPort", 0)) < 65536:
                    causes.append((f"{where}.ports", "containerPort must be 1-65535"))
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for i, c in enumerate(containers):
        for mount in c.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                causes.append(
                    (f"spec.containers[{i}].volumeMounts.name", f"Not found: {mount.get('name')!r}")
                )
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f"Unsupported value: {policy!r}"))
    return causes


def _pvc_problems(pvc: dict) -> list[tuple[str, str]]:
    spec = pvc.get("spec") or {}
    causes = []
    if not spec.get("accessModes"):
        causes.append(("spec.accessModes", "Required value: at least 1 access mode is required"))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(("spec.resources[storage]", "Required value"))
    else:
        causes += _quantities_problems("spec.resources.requests", {"storage": storage})
    return causes


def _service_problems(svc: dict) -> list[tuple[str, str]]:
    spec = svc.get("spec") or {}
    causes = []
    for i, port in enumerate(spec.get("ports") or []):
        if not 0 < int(port.get("port", 0)) < 65536:
            causes.append((f"spec.ports[{i}].port", "Invalid value: must be 1-65535"))
    if not spec.get("ports") and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "Required value"))
    return causes


def _binding_problems(binding: dict) -> list[tuple[str, str]]:
    ref = binding.get("roleRef") or {}
    causes = []
    if not ref.get("kind") or not ref.get("name"):
        causes.append(("roleRef", "Required value"))
    return causes


def _quota_problems(quota: dict) -> list[tuple[str, str]]:
    return _quantities_problems("spec.hard", (quota.get("spec") or {}).get("hard"))


_KIND_RULES = {
    "Pod": _pod_problems,
    "PersistentVolumeClaim": _pvc_problems,
    "Service": _service_problems,
    "RoleBinding": _binding_problems,
    "ClusterRoleBinding": _binding_problems,
    "ResourceQuota": _quota_problems,
}

"""ResourceQuota admission and usage, as the real quota admission plugin computes them."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from aglais_hub.quantity import format_for, parse

from .errors import ApiError
from .resources import BY_PATH, Resource

if TYPE_CHECKING:
    from .store import Store

COUNTED = {
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Service": "services",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
}
TERMINAL = ("Succeeded", "Failed")


def _container_sum(pod: dict, section: str, name: str) -> Decimal:
    total = Decimal(0)
    for c in (pod.get("spec") or {}).get("containers") or []:
        resources = c.get("resources") or {}
        value = (resources.get(section) or {}).get(name)
        if value is None and section == "requests":
            value = (resources.get("limits") or {}).get(name)  # requests default to limits
        if value is not None:
            total += parse(value)
    return total


def usage(kind: str, obj: dict) -> dict[str, Decimal]:
    """What one object counts against each quota resource name."""
    used: dict[str, Decimal] = {}
    if kind in COUNTED:
        used[COUNTED[kind]] = Decimal(1)
        used[f"count/{COUNTED[kind]}"] = Decimal(1)
    if kind == "Pod":
        if ((obj.get("status") or {}).get("phase")) in TERMINAL:
            return {}
        for name in ("cpu", "memory"):
            used[f"requests.{name}"] = used[name] = _container_sum(obj, "requests", name)
            used[f"limits.{name}"] = _container_sum(obj, "limits", name)
    if kind == "PersistentVolumeClaim":
        storage = (
            ((obj.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
        )
        used["requests.storage"] = parse(storage) if storage is not None else Decimal(0)
    return used


def _missing_requirements(kind: str, obj: dict, hard: dict) -> list[str]:
    """Resources a quota tracks that a pod's containers must state."""
    if kind != "Pod":
        return []
    missing = []
    for key in hard:
        if key in (
            "requests.cpu",
            "requests.memory",
            "cpu",
            "memory",
            "limits.cpu",
            "limits.memory",
        ):
            section, name = (
                ("limits", key[7:])
                if key.startswith("limits.")
                else ("requests", key.removeprefix("requests."))
            )
            for c in (obj.get("spec") or {}).get("containers") or []:
                res = c.get("resources") or {}
                if name not in (res.get(section) or {}) and name not in (res.get("limits") or {}):
                    missing.append(f"{section}.{name}")
                    break
    return sorted(set(missing))


def namespace_usage(
    store: Store, namespace: str, skip_uid: str | None = None
) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for kind, plural in COUNTED.items():
        resource = BY_PATH[("", "v1", plural)]
        for obj in store.all_objects(resource, namespace):
            if obj["metadata"]["uid"] == skip_uid:
                continue
            for key, value in usage(kind, obj).items():
                total[key] = total.get(key, Decimal(0)) + value
    return total


def quota_admission(store: Store):
    """An admission check that refuses writes which would exceed a ResourceQuota (403)."""

    def check(operation: str, resource: Resource, obj: dict, old: dict | None) -> None:
        if resource.kind not in COUNTED:
            return
        namespace = obj["metadata"].get("namespace", "")
        quotas = store.all_objects(BY_PATH[("", "v1", "resourcequotas")], namespace)
        if not quotas:
            return
        wanted = usage(resource.kind, obj)
        if old is not None:
            before = usage(resource.kind, old)
            wanted = {k: v - before.get(k, Decimal(0)) for k, v in wanted.items()}
            if all(v <= 0 for v in wanted.values()):
                return
        skip = old["metadata"]["uid"] if old is not None else None
        current = namespace_usage(store, namespace, skip_uid=skip)
        if old is not None:
            for k, v in usage(resource.kind, old).items():
                current[k] = current.get(k, Decimal(0)) + v
        name = obj["metadata"].get("name", "")
        for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            hard = (quota.get("spec") or {}).get("hard") or {}
            missing = _missing_requirements(resource.kind, obj, hard) if old is None else []
            if missing:
                raise ApiError.forbidden(
                    resource.plural,
                    name,
                    f"failed quota: {quota['metadata']['name']}: must specify " + ",".join(missing),
                )
            over = []
            for key, limit in sorted(hard.items()):
                if key not in wanted or wanted[key] <= 0:
                    continue
                used = current.get(key, Decimal(0))
                if used + wanted[key] > parse(limit):
                    over.append((key, wanted[key], used, parse(limit)))
            if over:
                requested = ",".join(f"{k}={format_for(k, w)}" for k, w, _, _ in over)
                used_text = ",".join(f"{k}={format_for(k, u)}" for k, _, u, _ in over)
                limited = ",".join(f"{k}={format_for(k, lim)}" for k, _, _, lim in over)
                raise ApiError.forbidden(
                    resource.plural,
                    name,
                    f"exceeded quota: {quota['metadata']['name']}, requested: {requested}, "
                    f"used: {used_text}, limited: {limited}",
                )

    return check

"""A container's environment, resolved the way a kubelet resolves it (ours).

The API server's address comes first (KUBERNETES_SERVICE_HOST/PORT: here the API
server's own loopback address, since the ``kubernetes`` Service's ClusterIP routes
nowhere), then ``envFrom``, then ``env`` with ``$(VAR)`` references to what came before;
values from the downward API, ``resourceFieldRef``, ``configMapKeyRef`` and
``secretKeyRef``. Not done: the per-Service variables of ``enableServiceLinks``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from aglais_hub.quantity import parse

from .objects import PodObjects


class ConfigError(Exception):
    """What a kubelet reports as CreateContainerConfigError (and retries)."""


@dataclass
class PodPlace:
    """Where a pod runs: its address, its node's, the API server's and the node's size."""

    pod_ip: str
    host_ip: str
    api_host: str
    api_port: int
    allocatable: dict[str, str]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion; $$ escapes; unknown references stay as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                  text)  # fmt: skip


def field_value(pod: dict, path: str, place: PodPlace) -> str:
    """A downward-API fieldRef."""
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    values = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": place.pod_ip, "status.podIPs": place.pod_ip,
        "status.hostIP": place.host_ip, "status.hostIPs": place.host_ip,
    }  # fmt: skip
    if path not in values:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return values[path]


def resource_value(container: dict, ref: dict, place: PodPlace) -> str:
    """A resourceFieldRef: limits default to the node's allocatable, as a kubelet does."""
    section, _, name = ref["resource"].partition(".")
    resources = (container.get("resources") or {}).get(section) or {}
    if name in resources:
        value = parse(resources[name])
    elif section == "limits":
        value = parse(place.allocatable.get(name, "0"))
    else:
        value = Decimal(0)
    divisor = parse(ref.get("divisor") or "1") or Decimal(1)
    return str(math.ceil(value / divisor))


async def _key(objects: PodObjects, kind: str, ref: dict) -> str | None:
    source = await (objects.secret if kind == "secret" else objects.config_map)(ref["name"])
    optional = bool(ref.get("optional"))
    label = "Secret" if kind == "secret" else "ConfigMap"
    if source is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found')
    if ref["key"] not in source:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {label} "
                          f"{objects.namespace}/{ref['name']}")  # fmt: skip
    return source[ref["key"]].decode(errors="replace")


async def container_env(pod: dict, container: dict, objects: PodObjects,
                        place: PodPlace) -> dict[str, str]:  # fmt: skip
    host, port = place.api_host, str(place.api_port)
    env: dict[str, str] = {
        "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
        "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
    }  # fmt: skip
    for source in container.get("envFrom") or []:
        for kind, key in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if kind not in source:
                continue
            ref = source[kind]
            data = await (objects.secret if key == "secret" else objects.config_map)(ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{key} "{ref["name"]}" not found')
            for name, value in data.items():
                env[source.get("prefix", "") + name] = value.decode(errors="replace")
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        origin = var["valueFrom"]
        if "fieldRef" in origin:
            env[name] = field_value(pod, origin["fieldRef"]["fieldPath"], place)
        elif "resourceFieldRef" in origin:
            env[name] = resource_value(container, origin["resourceFieldRef"], place)
        elif "configMapKeyRef" in origin or "secretKeyRef" in origin:
            kind = "configmap" if "configMapKeyRef" in origin else "secret"
            value = await _key(objects, kind, origin["configMapKeyRef" if kind == "configmap"
                                                     else "secretKeyRef"])  # fmt: skip
            if value is not None:
                env[name] = value
    return env

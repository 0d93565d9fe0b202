"""A container's environment, resolved the way a kubelet resolves it (ours).

The API server's address comes first (KUBERNETES_SERVICE_HOST/PORT: here the API
server's own loopback address, since the ``kubernetes`` Service's ClusterIP routes
nowhere), then ``envFrom``, then ``env`` with ``$(VAR)`` references to what came before;
values from the downward API, ``resourceFieldRef``, ``configMapKeyRef`` and
``secretKeyRef``. With ``enableServiceLinks`` (the default) the variables of every
Service of the pod's namespace that has a clusterIP at container start come first
(``<NAME>_SERVICE_HOST``, ``_SERVICE_PORT``, ``_SERVICE_PORT_<PORT NAME>``, ``<NAME>_PORT``
and ``<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]``), so explicit ones win; the
``kubernetes`` Service's stay the API server's real address. Not done: nothing known.
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
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


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
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": place.pod_ip,
        "status.podIPs": place.pod_ip,
        "status.hostIP": place.host_ip,
        "status.hostIPs": place.host_ip,
    }
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
        raise ConfigError(
            f"couldn't find key {ref['key']} in {label} {objects.namespace}/{ref['name']}"
        )
    return source[ref["key"]].decode(errors="replace")


def service_links(services: list[dict]) -> dict[str, str]:
    """The Docker-links-style variables a kubelet sets for Services (its
    getServiceEnvVarMap/FromServices): headless and IP-less Services have none."""
    env: dict[str, str] = {}
    for service in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = service["spec"]
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
        first = ports[0]
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = protocol.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


async def container_env(
    pod: dict,
    container: dict,
    objects: PodObjects,
    place: PodPlace,
    services: list[dict] | None = None,
) -> dict[str, str]:
    """``services``: the Services of the pod's namespace now (the caller lists them when
    ``enableServiceLinks`` is on; ``PodObjects.services``)."""
    host, port = place.api_host, str(place.api_port)
    env: dict[str, str] = {}
    if pod["spec"].get("enableServiceLinks", True):
        env.update(
            service_links(
                [
                    s
                    for s in services or []
                    if (s["metadata"].get("namespace"), s["metadata"]["name"])
                    != ("default", "kubernetes")
                ]
            )
        )
    env |= {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
    }
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
            value = await _key(
                objects, kind, origin["configMapKeyRef" if kind == "configmap" else "secretKeyRef"]
            )
            if value is not None:
                env[name] = value
    return env

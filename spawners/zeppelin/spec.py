"""The Zeppelin spawner's typed settings, and what decides one server (pure policy).

`kubernetes_settings(values)` reads ``spawner.kubernetes`` once (the hub's config
does it; the spawner never walks the values document). `server_spec` joins them with
one server's names, tier, size and environment into the `ServerSpec` every manifest
is built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aglais_hub.offering import ClusterSize, Overhead, Tier

from .objects import DataVolume, KubernetesSettings, ServerSpec


def kubernetes_settings(values: Mapping) -> KubernetesSettings:
    """The typed ``spawner.kubernetes`` of a validated, default-filled values document."""
    k8s, r = values["spawner"]["kubernetes"], values["reservations"]
    return KubernetesSettings(
        zeppelin_image=k8s["zeppelinImage"],
        spark_image=k8s["sparkImage"],
        storage_class=k8s["storageClass"],
        access_modes=tuple(k8s["accessModes"]),
        data_volumes=tuple(
            DataVolume(v["name"], v["mountPath"], v["source"]) for v in k8s["dataVolumes"]
        ),
        api_server=k8s["apiServer"],
        api_server_cidrs=tuple(k8s["apiServerCIDRs"]),
        data_cidrs=tuple(k8s["dataCIDRs"]),
        hub_selector=dict(k8s["hubSelector"]),
        driver_port=k8s["driverPort"],
        block_manager_port=k8s["blockManagerPort"],
        run_as_user=k8s["runAsUser"],
        pod_security=k8s["podSecurity"],
        activity_interval=k8s["activityInterval"],
        reservations_port=r["port"] if r["enabled"] else 0,
    )


@dataclass(frozen=True)
class ServerNames:
    """One server's object names, as KubeSpawner expanded its templates."""

    namespace: str
    pod: str
    claim: str


def server_spec(
    settings: KubernetesSettings,
    names: ServerNames,
    username: str,
    server_name: str,
    tier: Tier,
    size: ClusterSize,
    flavour: str,
    env: Mapping[str, str],
    pod_labels: Mapping[str, str],
    overhead: Overhead,
) -> ServerSpec:
    """Everything that decides the objects of one spawn."""
    return ServerSpec(
        username=username,
        server_name=server_name,
        namespace=names.namespace,
        pod_name=names.pod,
        pvc_name=names.claim,
        tier=tier,
        size=size,
        settings=settings,
        env=dict(env),
        flavour=flavour,
        pod_labels=dict(pod_labels),
        overhead=overhead,
    )

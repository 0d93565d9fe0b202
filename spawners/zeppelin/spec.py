"""The Zeppelin spawner's typed settings, read once from the values file.

`kubernetes_settings(values)` reads ``spawner.kubernetes`` (the hub's config calls it;
the spawner never walks the values document). `ZeppelinSpawner.server_spec_for` joins
them with one server's names, tier, size and environment into the `ServerSpec` every
manifest is built from.
"""

from __future__ import annotations

from collections.abc import Mapping

from .objects import DataVolume, KubernetesSettings


def kubernetes_settings(values: Mapping) -> KubernetesSettings:
    """The typed ``spawner.kubernetes`` of a validated, default-filled values document."""
    k8s, r = values["spawner"]["kubernetes"], values["reservations"]
    return KubernetesSettings(
        catalogues=values["spawner"]["catalogues"],
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

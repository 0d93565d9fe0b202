"""The testing cluster's volume provisioner: OURS, standing in for a CSI driver with its
external-provisioner and external-resizer sidecars.

It keeps the StorageClass ``aglais-local`` (the default class; provisioner
``aglais.dev/local-dir``, ``allowVolumeExpansion: true``, ``volumeBindingMode:
Immediate``, reclaim policy Delete). For each claim of that class that needs a volume, it
makes a directory ``<root>/<pv name>`` and a ``hostPath`` PersistentVolume for it with
``spec.claimRef`` naming the claim; the real PV binder controller then binds the two. When
a bound claim asks for more storage, it sets the PV's capacity and then the claim's
``status.capacity`` (shrinking is refused by the API server before it gets here). When a
released volume's reclaim policy is Delete, it removes the directory and the PV.

Not done: quotas or real sizes (a directory holds what it is given), WaitForFirstConsumer
and topology, snapshots, cloning, block volumes, access-mode enforcement (every node
agent on this machine sees every directory), mount options.

``python -m aglais_hub.testing.provisioner --kubeconfig K --root DIR`` runs it; it needs
the ClusterRole ``rbac()`` describes (aglais_hub.testing.devcluster binds it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from pathlib import Path

from aglais_hub.quantity import parse

from .nodeagent.client import (
    STRATEGIC,
    ApiClient,
    ApiError,
    list_and_watch,
    quote,
    user_cluster_role,
)
from .nodeagent.node import now
from .signalled import run_until_signalled

log = logging.getLogger(__name__)
PROVISIONER = "aglais.dev/local-dir"
STORAGE_CLASS = "aglais-local"
USER = "aglais:local-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }


def rbac(user: str = USER) -> list[tuple[str, dict]]:
    """(API path, object) pairs that let ``user`` do the provisioner's work, no more."""
    rules = [
        {
            "apiGroups": [""],
            "resources": ["persistentvolumes"],
            "verbs": ["get", "list", "watch", "create", "delete", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumeclaims"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["persistentvolumeclaims/status"], "verbs": ["patch"]},
        {
            "apiGroups": ["storage.k8s.io"],
            "resources": ["storageclasses"],
            "verbs": ["get", "list", "watch", "create"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    return user_cluster_role("aglais:local-provisioner", user, rules)


class Provisioner:
    def __init__(self, client: ApiClient, root: Path):
        self.client = client
        self.root = Path(root)
        self.busy: set[str] = set()  # claim uids being provisioned or resized
        self.later: dict[str, dict] = {}  # their latest versions, seen meanwhile

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            await self.client.post("/apis/storage.k8s.io/v1/storageclasses", storage_class())
        except ApiError as error:
            if error.status != 409:
                raise
        await asyncio.gather(
            list_and_watch(self.client, "/api/v1/persistentvolumeclaims", self.claim_event),
            list_and_watch(self.client, "/api/v1/persistentvolumes", self.volume_event),
        )

    # -- claims ------------------------------------------------------------------------

    def _ours(self, claim: dict) -> bool:
        annotations = claim["metadata"].get("annotations") or {}
        asked = annotations.get("volume.kubernetes.io/storage-provisioner")
        return claim["spec"].get("storageClassName") == STORAGE_CLASS and asked in (
            None,
            PROVISIONER,
        )

    async def claim_event(self, kind: str, claim: dict) -> None:
        if kind == "DELETED" or claim["metadata"].get("deletionTimestamp") or not self._ours(claim):
            return
        uid = claim["metadata"]["uid"]
        if uid in self.busy:  # handled when the work in progress is done
            self.later[uid] = claim
            return
        self.busy.add(uid)
        try:
            while claim is not None:
                phase = (claim.get("status") or {}).get("phase")
                try:
                    if phase == "Pending" and not claim["spec"].get("volumeName"):
                        await self.provision(claim)
                    elif phase == "Bound":
                        await self.resize(claim)
                except ApiError as error:
                    log.warning(
                        "claim %s/%s: %s",
                        claim["metadata"]["namespace"],
                        claim["metadata"]["name"],
                        error,
                    )
                claim = self.later.pop(uid, None)
        finally:
            self.busy.discard(uid)

    async def provision(self, claim: dict) -> None:
        meta = claim["metadata"]
        name = f"pvc-{meta['uid']}"
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": claim["spec"].get("volumeMode") or "Filesystem",
                "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            await self.client.post("/api/v1/persistentvolumes", volume)
        except ApiError as error:
            if error.status == 409:  # made before, and the binder has not caught up yet
                return
            await self.event(
                claim,
                "ProvisioningFailed",
                f"failed to provision volume with StorageClass {STORAGE_CLASS!r}: {error}",
                "Warning",
            )
            raise
        await self.event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}")

    async def resize(self, claim: dict) -> None:
        meta, status = claim["metadata"], claim.get("status") or {}
        wanted = claim["spec"]["resources"]["requests"]["storage"]
        have = (status.get("capacity") or {}).get("storage")
        volume_name = claim["spec"].get("volumeName")
        if not have or not volume_name or parse(wanted) <= parse(have):
            return
        namespace, name = meta["namespace"], quote(meta["name"])
        path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        # strategic merge: conditions merge by type, so the other controllers' stay
        await self.client.patch(
            f"{path}/status",
            {
                "status": {
                    "allocatedResources": {"storage": wanted},
                    "conditions": [
                        {"type": "Resizing", "status": "True", "lastTransitionTime": now()}
                    ],
                }
            },
            STRATEGIC,
        )
        await self.event(claim, "Resizing", f"External resizer is resizing volume {volume_name}")
        await self.client.patch(
            f"/api/v1/persistentvolumes/{volume_name}", {"spec": {"capacity": {"storage": wanted}}}
        )
        # a directory needs no file-system resize on the node: done here, as for a CSI
        # driver that reports no node expansion
        await self.client.patch(
            f"{path}/status",
            {
                "status": {
                    "capacity": {"storage": wanted},
                    "allocatedResourceStatuses": None,
                    "conditions": [{"type": "Resizing", "$patch": "delete"}],
                }
            },
            STRATEGIC,
        )
        await self.event(claim, "VolumeResizeSuccessful", "Resize volume succeeded")

    # -- volumes -----------------------------------------------------------------------

    async def volume_event(self, kind: str, volume: dict) -> None:
        meta, spec = volume["metadata"], volume["spec"]
        if kind == "DELETED" or (meta.get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return
        released = (volume.get("status") or {}).get("phase") in ("Released", "Failed")
        if not released or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        directory = Path((spec.get("hostPath") or {}).get("path", ""))
        if directory.parent == self.root:
            shutil.rmtree(directory, ignore_errors=True)
        try:
            await self.client.delete(f"/api/v1/persistentvolumes/{meta['name']}")
        except ApiError as error:
            if error.status != 404:
                log.warning("deleting %s: %s", meta["name"], error)

    async def event(self, claim: dict, reason: str, message: str, kind: str = "Normal") -> None:
        meta = claim["metadata"]
        stamp = now()
        try:
            await self.client.post(
                f"/api/v1/namespaces/{meta['namespace']}/events",
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "generateName": f"{meta['name']}.",
                        "namespace": meta["namespace"],
                    },
                    "involvedObject": {
                        "kind": "PersistentVolumeClaim",
                        "apiVersion": "v1",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "source": {"component": PROVISIONER},
                    "reportingComponent": PROVISIONER,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "count": 1,
                },
            )
        except Exception as error:  # noqa: BLE001 - an event lost is not worth a volume
            log.warning("event %s not recorded: %s", reason, error)


async def serve(kubeconfig: Path, root: Path) -> None:
    client = ApiClient.from_kubeconfig(kubeconfig, "aglais-local-provisioner")
    await run_until_signalled(Provisioner(client, root).run(), client.close)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aglais_hub.testing.provisioner",
        description="The testing cluster's volume provisioner.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--root", required=True, type=Path, help="volumes' directories")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args.kubeconfig, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())

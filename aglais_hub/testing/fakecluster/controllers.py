"""Controllers: garbage collection, namespaces, volumes, endpoints, quota status, events.

Each reacts to the store's change feed, like the real controllers react to watches,
so their effects are eventually (not instantly) visible, as on a real cluster.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from decimal import Decimal
from typing import TYPE_CHECKING

from aglais_hub.quantity import format_for, parse

from .admission import namespace_usage
from .errors import ApiError
from .resources import BY_PATH, RESOURCES, Resource
from .store import Change, Store, now

if TYPE_CHECKING:
    from . import FakeCluster

log = logging.getLogger(__name__)

R = {r.plural: r for r in RESOURCES if r.group == ""}
STORAGECLASSES = BY_PATH[("storage.k8s.io", "v1", "storageclasses")]
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def record_event(
    store: Store,
    obj: dict,
    reason: str,
    message: str,
    type_: str = "Normal",
    component: str = "kubelet",
) -> None:
    """Create a core/v1 Event about ``obj`` (as kubelet, scheduler or controllers do)."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    if not store.exists(R["namespaces"], "", namespace):
        return
    stamp = now()
    event = {
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "kind": obj["kind"],
            "apiVersion": obj["apiVersion"],
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": None,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "",
    }
    try:
        store.create(R["events"], namespace, event)
    except ApiError as error:  # a namespace going away refuses new content
        log.debug("event not recorded: %s", error.message)


def storage_admission(store: Store):
    """PVC resize rules: never shrink; grow only if the StorageClass allows expansion."""

    def check(operation: str, resource: Resource, obj: dict, old: dict | None) -> None:
        if resource.kind != "PersistentVolumeClaim" or old is None:
            return

        def size(o: dict) -> Decimal:
            return parse(o["spec"]["resources"]["requests"]["storage"])

        name = obj["metadata"]["name"]
        if size(obj) < size(old):
            raise ApiError.invalid(
                "PersistentVolumeClaim",
                name,
                [
                    (
                        "spec.resources.requests.storage",
                        "Forbidden: field can not be less than previous value",
                    )
                ],
            )
        if size(obj) > size(old):
            cls = old["spec"].get("storageClassName")
            sc = store.objects[STORAGECLASSES.key].get(("", cls or ""))
            if not old["spec"].get("volumeName") or not sc or not sc.get("allowVolumeExpansion"):
                raise ApiError.forbidden(
                    "persistentvolumeclaims",
                    name,
                    "only dynamically provisioned pvc can be resized and the storageclass "
                    "that provisions the pvc must support resize",
                )
        for field in ("accessModes", "storageClassName", "selector"):
            if old["spec"].get(field) != obj["spec"].get(field) and old["spec"].get("volumeName"):
                raise ApiError.invalid(
                    "PersistentVolumeClaim",
                    name,
                    [
                        (
                            "spec",
                            "Forbidden: spec is immutable after creation except "
                            "resources.requests for bound claims",
                        )
                    ],
                )

    return check


class Controllers:
    """The control loops, fed by the store's change feed."""

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self.store = cluster.store
        self.queue = self.store.subscribe()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        while True:
            change = await self.queue.get()
            try:
                self.handle(change)
            except Exception:  # a controller bug must not stop the others
                log.exception("controller failed on %s %s", change.type, change.resource.kind)

    def handle(self, change: Change) -> None:
        kind = change.resource.kind
        meta = change.obj["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        if change.type == "DELETED" or deleting:
            self.collect_garbage(change)
        if change.type != "DELETED" and meta.get("ownerReferences"):
            self.check_owners(change)
        if kind == "Namespace":
            self.namespace_changed(change)
        elif change.resource.namespaced:
            ns = meta.get("namespace")
            owner = self.store.objects["namespaces"].get(("", ns))
            if owner and owner["metadata"].get("deletionTimestamp"):
                self.finish_namespace(ns)
        if kind == "PersistentVolumeClaim":
            self.claim_changed(change)
        if kind in ("Pod", "Service"):
            self.update_endpoints(meta.get("namespace"))
        if kind in (
            "Pod",
            "PersistentVolumeClaim",
            "Service",
            "ConfigMap",
            "Secret",
            "ResourceQuota",
        ):
            self.update_quota_status(meta.get("namespace"))

    # -- garbage collection ----------------------------------------------------------------

    def dependents(self, uid: str) -> list[tuple[Resource, dict]]:
        found = []
        for resource in RESOURCES:
            for obj in list(self.store.objects[resource.key].values()):
                if any(
                    ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []
                ):
                    found.append((resource, obj))
        return found

    def collect_garbage(self, change: Change) -> None:
        meta = change.obj["metadata"]
        finalizers = meta.get("finalizers") or []
        uid = meta["uid"]
        if change.type != "DELETED" and "orphan" in finalizers:
            for resource, dep in self.dependents(uid):

                def drop(o: dict, uid: str = uid) -> None:
                    refs = [
                        r for r in o["metadata"].get("ownerReferences") or [] if r["uid"] != uid
                    ]
                    o["metadata"]["ownerReferences"] = refs or None
                    if not refs:
                        del o["metadata"]["ownerReferences"]

                self.store.update_status(
                    resource, dep["metadata"].get("namespace", ""), dep["metadata"]["name"], drop
                )
            self.store.remove_finalizer(
                change.resource, meta.get("namespace", ""), meta["name"], "orphan"
            )
            return
        if change.type != "DELETED" and "foregroundDeletion" not in finalizers:
            return
        remaining = 0
        for resource, dep in self.dependents(uid):
            dmeta = dep["metadata"]
            others = [
                r
                for r in dmeta.get("ownerReferences") or []
                if r["uid"] != uid and self.store.find_by_uid(r["uid"])
            ]
            if others:
                continue
            remaining += 1
            if not dmeta.get("deletionTimestamp"):
                policy = "Foreground" if change.type != "DELETED" else "Background"
                try:
                    self.store.delete(
                        resource, dmeta.get("namespace", ""), dmeta["name"], propagation=policy
                    )
                except ApiError:
                    pass
        if change.type != "DELETED" and remaining == 0:
            self.store.remove_finalizer(
                change.resource, meta.get("namespace", ""), meta["name"], "foregroundDeletion"
            )
        # a dependent that went away may unblock an owner waiting in foreground deletion
        if change.type == "DELETED":
            for ref in meta.get("ownerReferences") or []:
                found = self.store.find_by_uid(ref["uid"])
                if found and "foregroundDeletion" in (found[1]["metadata"].get("finalizers") or []):
                    owner_resource, owner = found
                    if not self.dependents(ref["uid"]):
                        self.store.remove_finalizer(
                            owner_resource,
                            owner["metadata"].get("namespace", ""),
                            owner["metadata"]["name"],
                            "foregroundDeletion",
                        )

    def check_owners(self, change: Change) -> None:
        """An object whose every owner is gone is deleted (dangling ownerReferences)."""
        meta = change.obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if refs and not any(self.store.find_by_uid(r["uid"]) for r in refs):
            if not meta.get("deletionTimestamp"):
                try:
                    self.store.delete(change.resource, meta.get("namespace", ""), meta["name"])
                except ApiError:
                    pass

    # -- namespaces ------------------------------------------------------------------------

    def namespace_changed(self, change: Change) -> None:
        meta = change.obj["metadata"]
        name = meta["name"]
        if change.type == "ADDED":
            self.store.update_status(
                R["namespaces"],
                "",
                name,
                lambda o: o.setdefault("status", {}).update(phase="Active"),
            )
            if not self.store.exists(R["serviceaccounts"], name, "default"):
                try:
                    self.store.create(R["serviceaccounts"], name, {"metadata": {"name": "default"}})
                except ApiError:
                    pass
        if change.type != "DELETED" and meta.get("deletionTimestamp"):
            self.finish_namespace(name)

    def finish_namespace(self, name: str) -> None:
        left = 0
        for resource in RESOURCES:
            if not resource.namespaced:
                continue
            for obj in list(self.store.all_objects(resource, name)):
                left += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.store.delete(resource, name, obj["metadata"]["name"])
                    except ApiError:
                        pass
        remaining = sum(len(self.store.all_objects(r, name)) for r in RESOURCES if r.namespaced)
        if remaining == 0:
            self.store.remove_finalizer(R["namespaces"], "", name, "kubernetes")

    # -- volumes ---------------------------------------------------------------------------

    def storage_class_for(self, claim: dict) -> dict | None:
        name = claim["spec"].get("storageClassName")
        classes = self.store.objects[STORAGECLASSES.key]
        if name:
            return classes.get(("", name))
        for sc in classes.values():
            if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
                return sc
        return None

    def claim_changed(self, change: Change) -> None:
        claim = change.obj
        meta = claim["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if change.type == "DELETED":
            volume = claim["spec"].get("volumeName")
            if volume and self.store.exists(R["persistentvolumes"], "", volume):
                pv = self.store.get(R["persistentvolumes"], "", volume)
                if pv["spec"].get("persistentVolumeReclaimPolicy", "Delete") == "Delete":
                    self.store.delete(R["persistentvolumes"], "", volume)
                    self.cluster.kubelet.forget_volume(volume)
            return
        phase = (claim.get("status") or {}).get("phase")
        requested = claim["spec"]["resources"]["requests"]["storage"]
        if phase == "Bound":
            capacity = claim["status"].get("capacity", {}).get("storage")
            if capacity and parse(requested) > parse(capacity):
                volume = claim["spec"]["volumeName"]
                self.store.update_status(
                    R["persistentvolumes"],
                    "",
                    volume,
                    lambda o: o["spec"]["capacity"].update(storage=requested),
                )
                self.store.update_status(
                    R["persistentvolumeclaims"],
                    ns,
                    name,
                    lambda o: o["status"]["capacity"].update(storage=requested),
                )
                record_event(
                    self.store,
                    claim,
                    "VolumeResizeSuccessful",
                    f"resize volume {volume} to {requested} succeeded",
                    component="volume_expand",
                )
            return
        if change.type != "ADDED":
            return
        sc = self.storage_class_for(claim)
        if sc is None:
            wanted = claim["spec"].get("storageClassName")
            message = (
                f'storageclass.storage.k8s.io "{wanted}" not found'
                if wanted
                else "no persistent volumes available for this claim and no storage class is set"
            )
            self.store.update_status(
                R["persistentvolumeclaims"],
                ns,
                name,
                lambda o: o.setdefault("status", {}).update(phase="Pending"),
            )
            record_event(
                self.store,
                claim,
                "ProvisioningFailed",
                message,
                "Warning",
                "persistentvolume-controller",
            )
            return
        volume = f"pvc-{meta['uid']}"
        self.store.create(
            R["persistentvolumes"],
            "",
            {
                "metadata": {
                    "name": volume,
                    "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")},
                },
                "spec": {
                    "capacity": {"storage": requested},
                    "accessModes": claim["spec"]["accessModes"],
                    "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                    "storageClassName": sc["metadata"]["name"],
                    "claimRef": {
                        "kind": "PersistentVolumeClaim",
                        "namespace": ns,
                        "name": name,
                        "uid": meta["uid"],
                        "apiVersion": "v1",
                    },
                    "hostPath": {"path": str(self.cluster.kubelet.volume_dir(volume))},
                },
            },
        )
        self.store.update_status(
            R["persistentvolumes"],
            "",
            volume,
            lambda o: o.setdefault("status", {}).update(phase="Bound"),
        )

        def bind(o: dict) -> None:
            o["spec"]["volumeName"] = volume
            o["spec"].setdefault("storageClassName", sc["metadata"]["name"])
            o["status"] = {
                "phase": "Bound",
                "accessModes": o["spec"]["accessModes"],
                "capacity": {"storage": requested},
            }

        self.store.update_status(R["persistentvolumeclaims"], ns, name, bind)
        record_event(
            self.store,
            claim,
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {volume}",
            component=sc.get("provisioner", ""),
        )

    # -- endpoints and quotas --------------------------------------------------------------

    def update_endpoints(self, namespace: str | None) -> None:
        if not namespace or not self.store.exists(R["namespaces"], "", namespace):
            return
        from .selectors import label_matcher

        pods = self.store.all_objects(R["pods"], namespace)
        for svc in list(self.store.all_objects(R["services"], namespace)):
            selector = (svc.get("spec") or {}).get("selector")
            if not selector or svc["metadata"].get("deletionTimestamp"):
                continue
            match = label_matcher(",".join(f"{k}={v}" for k, v in selector.items()))
            ready, not_ready = [], []
            for pod in pods:
                if not match(pod["metadata"].get("labels") or {}):
                    continue
                ip = (pod.get("status") or {}).get("podIP")
                if not ip or pod["metadata"].get("deletionTimestamp"):
                    continue
                address = {
                    "ip": ip,
                    "targetRef": {
                        "kind": "Pod",
                        "name": pod["metadata"]["name"],
                        "namespace": namespace,
                        "uid": pod["metadata"]["uid"],
                    },
                }
                conditions = (pod.get("status") or {}).get("conditions") or []
                is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                (ready if is_ready else not_ready).append(address)
            ports = [
                {
                    "name": p.get("name"),
                    "port": p.get("targetPort", p["port"]),
                    "protocol": p.get("protocol", "TCP"),
                }
                for p in svc["spec"].get("ports") or []
            ]
            subsets = []
            if ready or not_ready:
                subset = {"ports": ports}
                if ready:
                    subset["addresses"] = ready
                if not_ready:
                    subset["notReadyAddresses"] = not_ready
                subsets.append(subset)
            name = svc["metadata"]["name"]
            if self.store.exists(R["endpoints"], namespace, name):
                self.store.update_status(
                    R["endpoints"], namespace, name, lambda o, s=subsets: o.update(subsets=s)
                )
            else:
                self.store.create(
                    R["endpoints"],
                    namespace,
                    {
                        "metadata": {
                            "name": name,
                            "labels": svc["metadata"].get("labels") or {},
                            "ownerReferences": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "Service",
                                    "name": name,
                                    "uid": svc["metadata"]["uid"],
                                }
                            ],
                        },
                        "subsets": subsets,
                    },
                )

    def update_quota_status(self, namespace: str | None) -> None:
        if not namespace:
            return
        quotas = self.store.all_objects(R["resourcequotas"], namespace)
        if not quotas:
            return
        used = namespace_usage(self.store, namespace)
        for quota in list(quotas):
            hard = (quota.get("spec") or {}).get("hard") or {}
            status = {
                "hard": dict(hard),
                "used": {k: format_for(k, used.get(k, Decimal(0))) for k in hard},
            }
            self.store.update_status(
                R["resourcequotas"],
                namespace,
                quota["metadata"]["name"],
                lambda o, s=status: o.update(status=s),
            )

"""The object store behind the API server: resourceVersions, watches, deletion.

Single-threaded (one asyncio loop); every write bumps one global resourceVersion
and appends an event to a bounded history from which watches resume.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .defaults import apply_defaults
from .errors import ApiError
from .patch import apply_patch
from .resources import BY_KIND, RESOURCES, Resource, validate
from .selectors import Matcher, field_matcher, label_matcher

Admission = Callable[[str, Resource, dict, dict | None], None]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    """One write, as watches and controllers see it."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    obj: dict
    old: dict | None
    _lines: dict[str, str] = field(default_factory=dict, repr=False)

    def line(self, event_type: str) -> str:
        """The watch event as JSON, encoded once however many watches send it."""
        if event_type not in self._lines:
            self._lines[event_type] = json.dumps({"type": event_type, "object": self.obj})
        return self._lines[event_type]


WatchEvent = tuple[str, Change]


class Watch:
    """One open watch: a queue of events filtered by namespace and selectors."""

    def __init__(self, resource: Resource, namespace: str | None, labels: Matcher, fields: Matcher):
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.closed = False

    def matches(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)

    def translate(self, change: Change) -> WatchEvent | None:
        """The event this watch sees: objects entering or leaving the selection count."""
        if change.type == "DELETED":
            return ("DELETED", change) if self.matches(change.obj) else None
        now_in = self.matches(change.obj)
        was_in = change.old is not None and self.matches(change.old)
        if now_in and was_in:
            return ("MODIFIED", change)
        if now_in:
            return ("ADDED", change)
        if was_in:
            return ("DELETED", change)
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class Store:
    """Objects by resource, namespace and name, with Kubernetes write semantics."""

    def __init__(self, history: int = 20000):
        self.objects: dict[str, dict[tuple[str, str], dict]] = {r.key: {} for r in RESOURCES}
        self.rv = 0
        self.history: deque[Change] = deque(maxlen=history)
        self.watches: set[Watch] = set()
        self.subscribers: list[asyncio.Queue[Change]] = []
        self.admission: list[Admission] = []

    # -- reading -------------------------------------------------------------------------

    def _find(self, resource: Resource, namespace: str, name: str) -> dict:
        obj = self.objects[resource.key].get((namespace if resource.namespaced else "", name))
        if obj is None:
            raise ApiError.not_found(resource.plural, name, resource.group)
        return obj

    def get(self, resource: Resource, namespace: str, name: str) -> dict:
        return copy.deepcopy(self._find(resource, namespace, name))

    def exists(self, resource: Resource, namespace: str, name: str) -> bool:
        key = (namespace if resource.namespaced else "", name)
        return key in self.objects[resource.key]

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> tuple[list[dict], int]:
        labels, fields = label_matcher(label_selector), field_matcher(field_selector)
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self.objects[resource.key].items())
            if (not namespace or ns == namespace)
            and labels(obj["metadata"].get("labels") or {})
            and fields(obj)
        ]
        return items, self.rv

    def all_objects(self, resource: Resource, namespace: str | None = None) -> list[dict]:
        """Live (not copied) objects, for controllers that only read."""
        return [
            o
            for (ns, _), o in self.objects[resource.key].items()
            if namespace is None or ns == namespace
        ]

    def find_by_uid(self, uid: str) -> tuple[Resource, dict] | None:
        for resource in RESOURCES:
            for obj in self.objects[resource.key].values():
                if obj["metadata"]["uid"] == uid:
                    return resource, obj
        return None

    # -- writing -------------------------------------------------------------------------

    def _emit(self, type_: str, resource: Resource, obj: dict, old: dict | None) -> None:
        change = Change(self.rv, type_, resource, copy.deepcopy(obj), old)
        self.history.append(change)
        for watch in list(self.watches):
            if watch.resource is resource and not watch.closed:
                event = watch.translate(change)
                if event:
                    watch.queue.put_nowait(event)
        for queue in self.subscribers:
            queue.put_nowait(change)

    def _admit(self, operation: str, resource: Resource, obj: dict, old: dict | None) -> None:
        for check in self.admission:
            check(operation, resource, obj, old)

    def create(self, resource: Resource, namespace: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if resource.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError.bad_request(
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request"
                )
            meta["namespace"] = namespace
            ns = self.objects["namespaces"].get(("", namespace))
            if ns is None:
                raise ApiError.not_found("namespaces", namespace)
            if ns["metadata"].get("deletionTimestamp") and resource.kind != "Event":
                raise ApiError.forbidden(
                    resource.plural,
                    meta.get("name", ""),
                    f"unable to create new content in namespace {namespace} "
                    "because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        validate(resource, obj)
        apply_defaults(resource.kind, obj)
        if self.exists(resource, namespace, meta["name"]):
            raise ApiError.already_exists(resource.plural, meta["name"], resource.group)
        self._admit("CREATE", resource, obj, None)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        key = (namespace if resource.namespaced else "", meta["name"])
        self.objects[resource.key][key] = obj
        self._emit("ADDED", resource, obj, None)
        return copy.deepcopy(obj)

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        new: dict,
        subresource: str = "",
        check_version: bool = True,
    ) -> dict:
        current = self._find(resource, namespace, name)
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError.bad_request("the name of the object does not match the name on the URL")
        given = meta.get("resourceVersion")
        if check_version and given and given != current["metadata"]["resourceVersion"]:
            raise ApiError.conflict(
                resource.plural,
                name,
                "the object has been modified; please apply your changes "
                "to the latest version and try again",
            )
        old = copy.deepcopy(current)
        if resource.has_status:
            if subresource == "status":
                new = {**copy.deepcopy(current), "status": new.get("status", {})}
            else:
                new["status"] = copy.deepcopy(current.get("status", {}))
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        # fields the server owns
        for key in (
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
            else:
                new["metadata"].pop(key, None)
        new["metadata"]["name"] = name
        validate(resource, new)
        self._admit("UPDATE", resource, new, old)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        else:
            new["metadata"]["generation"] = old["metadata"].get("generation", 1)
        if _without_version(new) == _without_version(old):
            return copy.deepcopy(current)  # no-op updates do not bump the version
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource.key][(namespace if resource.namespaced else "", name)] = new
        self._emit("MODIFIED", resource, new, old)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if not self._awaits_kubelet(resource, new):
                self._remove(resource, new)
        return copy.deepcopy(new)

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str = "",
    ) -> dict:
        current = self.get(resource, namespace, name)
        patched = apply_patch(content_type, current, body)
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "patch did not produce an object")
        check = "resourceVersion" in (
            (body if isinstance(body, dict) else {}).get("metadata") or {}
        )
        return self.replace(resource, namespace, name, patched, subresource, check_version=check)

    def update_status(
        self, resource: Resource, namespace: str, name: str, mutate: Callable[[dict], None]
    ) -> dict | None:
        """Controllers' write path: change an object in place, bump, notify."""
        try:
            current = self._find(resource, namespace, name)
        except ApiError:
            return None
        old = copy.deepcopy(current)
        mutate(current)
        if current == old:
            return current
        self.rv += 1
        current["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("MODIFIED", resource, current, old)
        return current

    # -- deleting ------------------------------------------------------------------------

    @staticmethod
    def _awaits_kubelet(resource: Resource, obj: dict) -> bool:
        """A scheduled pod is removed by its kubelet once its containers stopped."""
        return (
            resource.kind == "Pod"
            and bool((obj.get("spec") or {}).get("nodeName"))
            and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0
        )

    def _remove(self, resource: Resource, obj: dict) -> dict:
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if resource.namespaced else "", meta["name"])
        removed = self.objects[resource.key].pop(key, None)
        if removed is None:
            return obj
        self.rv += 1
        removed["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", resource, removed, None)
        return removed

    def delete(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        propagation: str | None = None,
        grace_period: int | None = None,
        preconditions: dict | None = None,
    ) -> dict:
        obj = self._find(resource, namespace, name)
        meta = obj["metadata"]
        for key in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(key)
            if wanted and wanted != meta.get(key):
                raise ApiError.conflict(
                    resource.plural,
                    name,
                    f"Precondition failed: {key} in precondition: "
                    f"{wanted}, {key} in object meta: {meta.get(key)}",
                )
        if resource.kind == "Pod" and grace_period is None:
            grace_period = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if meta.get("deletionTimestamp"):
            if resource.kind == "Pod" and grace_period == 0:
                return copy.deepcopy(self._remove(resource, obj))  # force delete
            return copy.deepcopy(obj)
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground":
            finalizers.append("foregroundDeletion")
        elif propagation == "Orphan":
            finalizers.append("orphan")
        if resource.kind == "Namespace":
            finalizers.append("kubernetes")

        def mark(o: dict) -> None:
            o["metadata"]["deletionTimestamp"] = now()
            o["metadata"]["finalizers"] = list(dict.fromkeys(finalizers)) or None
            if o["metadata"]["finalizers"] is None:
                del o["metadata"]["finalizers"]
            if resource.kind == "Pod":
                o["metadata"]["deletionGracePeriodSeconds"] = grace_period
            if resource.kind == "Namespace":
                o.setdefault("status", {})["phase"] = "Terminating"

        scheduled_pod = resource.kind == "Pod" and (obj.get("spec") or {}).get("nodeName")
        if finalizers or (scheduled_pod and grace_period):
            return copy.deepcopy(self.update_status(resource, namespace, name, mark))
        return copy.deepcopy(self._remove(resource, obj))

    def finish_deletion(self, resource: Resource, namespace: str, name: str) -> None:
        """Remove an object whose deletion was waiting (kubelet done, finalizers gone)."""
        try:
            obj = self._find(resource, namespace, name)
        except ApiError:
            return
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            self._remove(resource, obj)

    def remove_finalizer(
        self, resource: Resource, namespace: str, name: str, finalizer: str
    ) -> None:
        def drop(o: dict) -> None:
            remaining = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            if remaining:
                o["metadata"]["finalizers"] = remaining
            else:
                o["metadata"].pop("finalizers", None)

        obj = self.update_status(resource, namespace, name, drop)
        if obj is not None and not self._awaits_kubelet(resource, obj):
            self.finish_deletion(resource, namespace, name)

    # -- watching ------------------------------------------------------------------------

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
    ) -> Watch:
        """Open a watch. From a resourceVersion: replay later events, or 410 if compacted.
        Without one (or "0"): synthetic ADDED events for what exists now, then live."""
        watch = Watch(
            resource, namespace, label_matcher(label_selector), field_matcher(field_selector)
        )
        if resource_version in (None, "", "0"):
            items, _ = self.list(resource, namespace, label_selector, field_selector)
            for item in items:
                synthetic = Change(self.rv, "ADDED", resource, item, None)
                watch.queue.put_nowait(("ADDED", synthetic))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise ApiError.bad_request(
                    f"invalid resourceVersion {resource_version!r}"
                ) from None
            oldest = self.history[0].rv if self.history else self.rv + 1
            if since < oldest - 1 and since < self.rv:
                raise ApiError.gone(f"too old resource version: {since} ({oldest - 1})")
            for change in self.history:
                if change.rv > since and change.resource is resource:
                    event = watch.translate(change)
                    if event:
                        watch.queue.put_nowait(event)
        self.watches.add(watch)
        return watch

    def stop_watch(self, watch: Watch) -> None:
        watch.close()
        self.watches.discard(watch)

    def drop_all_watches(self) -> int:
        """Close every open watch (fault injection); clients must resume."""
        count = len(self.watches)
        for watch in list(self.watches):
            self.stop_watch(watch)
        return count

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self.subscribers.append(queue)
        return queue


def _without_version(obj: dict) -> dict:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def resource_of(obj: dict) -> Resource:
    try:
        return BY_KIND[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise ApiError.bad_request(
            f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}"
        ) from None

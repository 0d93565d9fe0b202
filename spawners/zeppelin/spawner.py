"""ZeppelinSpawner: a KubeSpawner whose pods run Zeppelin behind the Aglais auth proxy."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from jupyterhub.spawner import SpawnException
from jupyterhub.utils import exponential_backoff
from kubernetes_asyncio.client import (
    NetworkingV1Api,
    RbacAuthorizationV1Api,
    V1PersistentVolumeClaim,
    V1Pod,
)
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Dict, default

from aglais_hub.quotas import Tier, parse_quantity

from ..base import AglaisSpawnerMixin
from . import objects
from .podstatus import friendly_event, start_problem
from .spec import ProfileRefused, cluster_size, server_spec

RETRIED = (429, 500, 502, 503, 504)  # API answers worth another try
# the API server's words for an RBAC refusal (a 403 that is not an exceeded quota)
FORBIDDEN = re.compile(r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
                       r'(?: in API group "(?P<group>[^"]*)")?'
                       r'(?: in the namespace "(?P<namespace>[^"]+)"'
                       r'|(?P<cluster> at the cluster scope))?')  # fmt: skip


def forbidden_message(error: BaseException) -> str | None:
    """Hub words for a Kubernetes RBAC refusal anywhere in ``error``'s chain (the verb,
    resource and namespace the hub's ServiceAccount may not use), else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ApiException) and current.status == 403:
            try:
                status = json.loads(current.body or "{}")
            except ValueError:
                status = None
            message = status.get("message") if isinstance(status, dict) else None
            text = message or current.reason or ""
            found = FORBIDDEN.search(text)
            if found:
                resource = found["resource"]
                if found["group"]:
                    resource += f" (API group {found['group']})"
                where = (f" in namespace {found['namespace']}" if found["namespace"]
                         else " at the cluster scope" if found["cluster"] else "")  # fmt: skip
                return (f"The hub may not {found['verb']} {resource}{where} (forbidden by "
                        f"the cluster's RBAC: {text}). Ask an administrator to check the "
                        "hub's ClusterRole.")  # fmt: skip
        current = current.__cause__ or current.__context__
    return None


class _Body:
    """What the client's deserializer reads a model from (a response's JSON text)."""

    def __init__(self, manifest: dict):
        self.data = json.dumps(manifest)


class ZeppelinSpawner(AglaisSpawnerMixin, KubeSpawner):
    """Each server is a pod in the user's own namespace: the auth proxy in front of
    Zeppelin, Spark executors owned by the pod, the user's claim sized by their tier.

    Every manifest comes from `spawners.zeppelin.objects` (pure functions, also
    printed by ``aglais-hub render-pod``); this class only creates them in order.
    """

    values = Dict(
        config=True,
        help="The whole values document (spawner.kubernetes, sizes, tiers), defaults filled in.",
    )

    spec: objects.ServerSpec | None = None
    last_api_error: str = ""
    starting: bool = False

    @default("enable_user_namespaces")
    def _enable_user_namespaces_default(self) -> bool:
        return True

    @default("user_namespace_template")
    def _user_namespace_template_default(self) -> str:
        return self.values["spawner"]["kubernetes"]["namespaceTemplate"]

    @default("pod_name_template")
    def _pod_name_template_default(self) -> str:
        return self.values["spawner"]["kubernetes"]["podNameTemplate"]

    @default("pvc_name_template")
    def _pvc_name_template_default(self) -> str:
        return "claim-{username}"

    @default("storage_pvc_ensure")
    def _storage_pvc_ensure_default(self) -> bool:
        return True

    @default("delete_pvc")
    def _delete_pvc_default(self) -> bool:
        return False  # deleting a user keeps their notebooks unless an admin removes the claim

    @default("port")
    def _port_default(self) -> int:
        return objects.PROXY_PORT

    @default("after_pod_created_hook")
    def _after_pod_created_hook_default(self) -> Any:
        return ZeppelinSpawner._after_pod_created

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> Any:
        tier = await self.prepare_start()
        profile = (self.user_options or {}).get("profile")
        try:
            self.spec = server_spec(self.values, self.user.name, tier, self.name, profile,
                                    env=self.get_env(), pvc_name=self.pvc_name)  # fmt: skip
            if self.gate_size is not None:  # the booking's size, not the form's
                self.spec = replace(self.spec, size=self.gate_size)
        except ProfileRefused as refused:
            raise SpawnException(str(refused), reason="profile", status_code=403) from None
        self.namespace = self.spec.namespace
        self.pod_name = self.spec.pod_name
        self.last_api_error = ""
        self.starting = True
        try:
            return await super().start()
        except TimeoutError as timeout:
            await self._clean_up_failed_spawn()
            if self.last_api_error:
                raise SpawnException(
                    f"The cluster kept refusing to start your server ({self.last_api_error}). "
                    "Try again in a minute; tell an administrator if it persists.",
                    reason="api",
                    status_code=503,
                ) from timeout
            raise
        except Exception as error:
            await self._clean_up_failed_spawn()
            refused = forbidden_message(error)
            if refused:
                self.log.error("Spawning %s: %s", self._log_name, refused)
                refusal = SpawnException(refused, reason="rbac", status_code=403)
                refusal.jupyterhub_message = refused  # what the spawn-pending page shows
                raise refusal from error
            raise
        finally:
            self.starting = False

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.reservations_url:  # the auth proxy shows the booking's notices
            env["AGLAIS_RESERVATIONS_URL"] = self.reservations_url
        return env

    def check_options(self, tier: Tier) -> None:
        try:
            cluster_size(self.values, tier, (self.user_options or {}).get("profile"))
        except ProfileRefused as refused:
            raise SpawnException(str(refused), reason="profile", status_code=403) from None

    async def _clean_up_failed_spawn(self) -> None:
        """A failed spawn leaves nothing behind: the pod (and with it the driver Service
        and executors) and the Spark ConfigMap."""
        try:
            await self.stop(now=True)
        except Exception:  # the original failure matters more than this one
            self.log.exception("Cleaning up after a failed spawn of %s", self._log_name)

    async def _apply(self, manifest: dict) -> None:
        """Create an object, or replace it where it exists (objects shared by servers)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        rbac = RbacAuthorizationV1Api(self.api.api_client)
        networking = NetworkingV1Api(self.api.api_client)
        api, suffix = {
            "Namespace": (self.api, "namespace"),
            "ServiceAccount": (self.api, "namespaced_service_account"),
            "ResourceQuota": (self.api, "namespaced_resource_quota"),
            "ConfigMap": (self.api, "namespaced_config_map"),
            "Service": (self.api, "namespaced_service"),
            "Role": (rbac, "namespaced_role"),
            "RoleBinding": (rbac, "namespaced_role_binding"),
            "NetworkPolicy": (networking, "namespaced_network_policy"),
        }[kind]
        where = [meta["namespace"]] if "namespace" in meta else []

        async def attempt() -> bool:
            try:
                await getattr(api, f"create_{suffix}")(*where, manifest)
            except ApiException as error:
                if error.status in RETRIED:
                    self.log.warning("Creating %s %s: %s, retrying", kind, meta["name"],
                                     error.status)  # fmt: skip
                    return False
                if error.status != 409:
                    raise
                if kind != "Namespace":
                    await getattr(api, f"replace_{suffix}")(meta["name"], *where, manifest)
            return True

        await exponential_backoff(attempt, f"Could not create {kind} {meta['name']}",
                                  timeout=self.k8s_api_request_retry_timeout)  # fmt: skip

    async def _ensure_namespace(self) -> None:
        assert self.spec is not None
        for manifest in objects.namespace_objects(self.spec):
            await self._apply(manifest)
        await self._apply(objects.spark_config_map(self.spec))

    def _model(self, manifest: dict, model: str) -> Any:
        """A dict manifest as the client's typed model (KubeSpawner reads its attributes)."""
        return self.api.api_client.deserialize(_Body(manifest), model)

    def get_pvc_manifest(self) -> V1PersistentVolumeClaim:
        assert self.spec is not None
        return self._model(objects.persistent_volume_claim(self.spec), "V1PersistentVolumeClaim")

    async def _grow_claim(self) -> None:
        """A larger tier grows the claim (where the StorageClass allows); never shrink."""
        assert self.spec is not None
        claim = await self.api.read_namespaced_persistent_volume_claim(self.pvc_name,
                                                                       self.namespace)  # fmt: skip
        have = parse_quantity(claim.spec.resources.requests["storage"])
        want = self.spec.tier.storage
        if want > have:
            patch = {"spec": {"resources": {"requests": {"storage": str(want)}}}}
            try:
                await self.api.patch_namespaced_persistent_volume_claim(
                    self.pvc_name, self.namespace, patch)  # fmt: skip
                self.log.info("Grew %s from %s to %s bytes", self.pvc_name, have, want)
            except ApiException as error:
                self.log.warning("Could not grow %s: %s", self.pvc_name, error.reason)
        elif want < have:
            self.log.info("Keeping %s at %s bytes: volumes never shrink (tier asks %s)",
                          self.pvc_name, have, want)  # fmt: skip

    async def get_pod_manifest(self) -> V1Pod:
        assert self.spec is not None
        await self._grow_claim()
        pod = objects.pod(self.spec)
        # KubeSpawner's reflector and z2jh tools find singleuser pods by these labels
        pod["metadata"]["labels"].update({
            "component": self.component_label,
            "hub.jupyter.org/username": self._expand_user_properties("{username}"),
            "hub.jupyter.org/servername": self._expand_user_properties("{servername}"),
        })  # fmt: skip
        return self._model(pod, "V1Pod")

    async def progress(self) -> Any:
        """The spawn page's steps, in words a user understands."""
        async for event in self.gate_progress():
            yield event
        yield {"progress": 2, "message": "Preparing your namespace, volume and Spark settings"}
        async for event in super().progress():
            raw = event.get("raw_event")
            text = friendly_event(raw) if raw else None
            if text == "":
                continue
            if text:
                event = {**event, "message": text}
            yield event

    def is_pod_running(self, pod: dict | None) -> bool:
        # fail the spawn at once, with the reason, when the pod cannot start by itself
        problem = start_problem(pod) if self.starting else None
        if problem:
            raise SpawnException(problem, reason="pod", status_code=500)
        return super().is_pod_running(pod)

    async def _make_create_pod_request(self, pod: V1Pod, request_timeout: int) -> bool:
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except ApiException as error:
            if error.status in RETRIED:
                self.last_api_error = f"{error.status} {error.reason} creating the pod"
                self.log.warning("%s, retrying", self.last_api_error)
                return False
            if error.status == 403 and "exceeded quota" in (error.body or ""):
                message = json.loads(error.body).get("message", error.reason)
                raise SpawnException(
                    f"This server does not fit in your tier's quota: {message}. "
                    "Stop another server or choose a smaller size.",
                    reason="quota", status_code=403,
                ) from None  # fmt: skip
            raise

    @staticmethod
    async def _after_pod_created(spawner: ZeppelinSpawner, pod: dict) -> None:
        """The driver's headless Service, and the Spark ConfigMap, owned by the pod."""
        assert spawner.spec is not None
        uid = pod["metadata"]["uid"]
        await spawner._apply(objects.driver_service(spawner.spec, uid))
        owner = {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                 "name": spawner.pod_name, "uid": uid}]}}  # fmt: skip
        await spawner.api.patch_namespaced_config_map(spawner.spec.config_map,
                                                      spawner.namespace, owner)  # fmt: skip

    async def _delete_config_map(self) -> None:
        if self.spec is None:
            return
        try:
            await self.api.delete_namespaced_config_map(self.spec.config_map, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def stop(self, now: bool = False) -> None:
        await super().stop(now)
        await self._delete_config_map()  # owned by the pod, but a pod may never have existed

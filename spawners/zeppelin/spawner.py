"""ZeppelinSpawner: a KubeSpawner whose pods run Zeppelin behind the Aglais auth proxy."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from jupyterhub.utils import exponential_backoff
from kubernetes_asyncio.client import (
    NetworkingV1Api,
    RbacAuthorizationV1Api,
    V1PersistentVolumeClaim,
    V1Pod,
)
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Dict, Float, Instance, default

from aglais_hub.offering import ClusterSize, ProfileRefused, Tier
from aglais_hub.quantity import parse_quantity

from ..base import AglaisSpawnerMixin, LaunchTimeout, SpawnRefused
from . import apply, objects
from .objects import KubernetesSettings
from .podstatus import friendly_event, start_problem

RETRIED = (429, 500, 502, 503, 504)  # API answers worth another try
# after cleanup_timeout, a failed spawn's clean-up goes on in the background for this
# long, unless a new spawn of the same server begins (which rewrites, then owns, the rest)
CLEANUP_BACKGROUND = 600.0
# the API server's words for an RBAC refusal (a 403 that is not an exceeded quota)
FORBIDDEN = re.compile(
    r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]+)"'
    r"|(?P<cluster> at the cluster scope))?"
)


def worth_retrying(error: ApiException) -> bool:
    """An API answer a write should be tried again after: a transient status, or a new
    quota the API server has not counted yet."""
    return error.status in RETRIED or apply.quota_not_counted(error.status, error.body)


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
                where = (
                    f" in namespace {found['namespace']}"
                    if found["namespace"]
                    else " at the cluster scope"
                    if found["cluster"]
                    else ""
                )
                return (
                    f"The hub may not {found['verb']} {resource}{where} (forbidden by "
                    f"the cluster's RBAC: {text}). Ask an administrator to check the "
                    "hub's ClusterRole."
                )
        current = current.__cause__ or current.__context__
    return None


class _Body:
    """What the client's deserializer reads a model from (a response's JSON text)."""

    def __init__(self, manifest: dict):
        self.data = json.dumps(manifest)


class ZeppelinSpawner(AglaisSpawnerMixin, KubeSpawner):
    """Each server is a pod in the user's own namespace: the auth proxy in front of
    Zeppelin, Spark executors owned by the pod, the user's claim sized by their tier.

    Every manifest comes from `spawners.zeppelin.objects` (pure functions) fed by
    `server_spec_for`, which ``aglais-hub render-pod`` calls too, so the dry run is
    the spawn; this class only creates them, in the stages of
    `spawners.zeppelin.apply` (concurrently within a stage, and the user's shared
    objects only when they changed). Object names are KubeSpawner's own
    (``user_namespace_template``, ``pod_name_template``, ``pvc_name_template``).
    """

    kubernetes = Instance(
        KubernetesSettings,
        config=True,
        help="The values file's spawner.kubernetes, typed (the hub's config builds it).",
    )

    applied = Dict(help="Digests of the shared objects last written (kept in the state).")

    cleanup_timeout = Float(
        30.0,
        config=True,
        help="""Seconds a failed spawn's clean-up (its pod and Spark ConfigMap) retries while
        the API server does not answer, before the spawn's failure is reported (at least
        k8s_api_request_retry_timeout). The failure may be the API server restarting; after
        this the clean-up goes on in the background (up to ten minutes) unless the server
        is spawned again.""",
    )

    spec: objects.ServerSpec | None = None
    spawns_begun: int = 0  # a background clean-up stops when a newer spawn has begun
    _background_cleanup: asyncio.Future | None = None
    last_api_error: str = ""
    starting: bool = False
    fresh_namespace: bool = False  # created by this spawn: nothing of the user's exists yet

    @default("enable_user_namespaces")
    def _enable_user_namespaces_default(self) -> bool:
        return True

    @default("kubernetes")
    def _kubernetes_default(self) -> KubernetesSettings:
        raise SpawnRefused(
            "The hub's spawner.kubernetes settings are missing; ask an administrator.",
            reason="config",
        )

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
            # the booking's size (gate_size) and flavour, where there is one, not the form's
            flavour = self.offering.booked_flavour(self.gate_booked)
            self.spec = self.server_spec_for(
                tier, profile, self.gate_size, self.get_env(), flavour=flavour
            )
        except ProfileRefused as refused:
            raise SpawnRefused(str(refused), reason="profile", status_code=403) from None
        self.last_api_error = ""
        self.starting = True
        self.spawns_begun += 1
        try:
            return await self.launch(super().start())
        except (TimeoutError, LaunchTimeout) as timeout:
            await self._clean_up_failed_spawn()
            if self.last_api_error:
                raise SpawnRefused(
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
                raise SpawnRefused(refused, reason="rbac", status_code=403) from error
            raise
        finally:
            self.starting = False

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.reservations_url:  # the auth proxy shows the booking's notices
            env["AGLAIS_RESERVATIONS_URL"] = self.reservations_url
        return env

    def server_spec_for(
        self,
        tier: Tier,
        profile: str | None,
        size: ClusterSize | None,
        env: dict[str, str],
        flavour: str | None = None,
    ) -> objects.ServerSpec:
        """Everything this server's objects are built from: ``profile``'s size and
        flavour (or ``size`` and ``flavour``, a booking's), KubeSpawner's names and the
        hub's labels."""
        named_size, profile_flavour = self.offering.server_size(tier, profile)
        # KubeSpawner's reflector and z2jh tools find singleuser pods by these labels
        hub_labels = {
            "component": self.component_label,
            "hub.jupyter.org/username": self._expand_user_properties("{username}"),
            "hub.jupyter.org/servername": self._expand_user_properties("{servername}"),
        }
        return objects.ServerSpec(
            username=self.user.name,
            server_name=self.name,
            namespace=self.namespace,
            pod_name=self.pod_name,
            pvc_name=self.pvc_name,
            tier=tier,
            size=size or named_size,
            settings=self.kubernetes,
            env=dict(env),
            flavour=flavour or profile_flavour,
            pod_labels=hub_labels,
            overhead=self.offering.overhead,
        )

    def check_options(self, tier: Tier) -> None:
        try:
            self.offering.server_size(tier, (self.user_options or {}).get("profile"))
        except ProfileRefused as refused:
            raise SpawnRefused(str(refused), reason="profile", status_code=403) from None

    def get_state(self) -> dict:
        state = super().get_state()
        if self.applied:
            state["applied_objects"] = dict(self.applied)
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.applied = dict(state.get("applied_objects") or {})

    async def _clean_up_failed_spawn(self) -> None:
        """A failed spawn leaves nothing behind: the pod (and with it the driver Service
        and executors) and the Spark ConfigMap; and the next one writes every shared
        object again (whatever failed may have been one of them)."""
        self.applied = {}

        async def attempt() -> bool:
            try:
                await self.stop(now=True)
            except ApiException as error:
                # 403 too: a restarted API server answers before its RBAC caches are
                # filled and refuses, for a moment, what the hub may do
                if error.status not in (*RETRIED, 403):
                    raise
                self.log.warning("Cleaning up after %s: %s, retrying", self._log_name, error.status)
                return False
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                # the API server may be the failure (restarting): wait for it to come back
                self.log.warning("Cleaning up after %s: %r, retrying", self._log_name, error)
                return False
            return True

        try:
            patience = max(self.k8s_api_request_retry_timeout, self.cleanup_timeout)
            await exponential_backoff(
                attempt, f"Could not clean up after {self._log_name}", timeout=patience
            )
        except TimeoutError:  # the user hears of the spawn's failure now; we go on
            self.log.warning(
                "Cleaning up after %s: the API server is still away; retrying in the background",
                self._log_name,
            )
            self._background_cleanup = asyncio.ensure_future(self._clean_up_later(attempt))
        except Exception:  # the original failure matters more than this one
            self.log.exception("Cleaning up after a failed spawn of %s", self._log_name)

    async def _clean_up_later(self, attempt: Any) -> None:
        failed_spawn = self.spawns_begun

        async def unless_respawned() -> bool:
            if self.spawns_begun != failed_spawn:
                return True  # a new spawn replaces, then owns, whatever was left
            return await attempt()

        try:
            await exponential_backoff(unless_respawned, "", timeout=CLEANUP_BACKGROUND, max_wait=10)
            self.log.info("Cleaned up after the failed spawn of %s", self._log_name)
        except Exception:
            self.log.exception(
                "Giving up cleaning up after %s: its pod or Spark ConfigMap may be left in %s",
                self._log_name,
                self.namespace,
            )

    def _api_for(self, kind: str) -> tuple[Any, str]:
        """The client API object and method suffix that write ``kind``."""
        group, suffix = apply.KIND_API[kind]
        api = {"core": self.api, "rbac": RbacAuthorizationV1Api, "networking": NetworkingV1Api}[
            group
        ]
        return (api if group == "core" else api(self.api.api_client)), suffix

    async def _apply(self, manifest: dict) -> str:
        """Create an object, or replace it where it exists (objects shared by servers);
        "created", "replaced", or "existed" (a namespace is never replaced)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        api, suffix = self._api_for(kind)
        where = [meta["namespace"]] if "namespace" in meta else []
        outcome = "created"

        async def attempt() -> bool:
            nonlocal outcome
            try:
                await getattr(api, f"create_{suffix}")(*where, manifest)
            except ApiException as error:
                if worth_retrying(error):
                    self.log.warning(
                        "Creating %s %s: %s, retrying", kind, meta["name"], error.status
                    )
                    return False
                if error.status != 409:
                    raise
                outcome = "existed"
                if kind != "Namespace":
                    await getattr(api, f"replace_{suffix}")(meta["name"], *where, manifest)
                    outcome = "replaced"
            return True

        await exponential_backoff(
            attempt,
            f"Could not create {kind} {meta['name']}",
            timeout=self.k8s_api_request_retry_timeout,
        )
        return outcome

    async def _apply_in_order(self, manifests: list[dict]) -> None:
        for manifest in manifests:
            await self._apply(manifest)

    async def _ensure_namespace(self) -> None:
        """The namespace first; then, concurrently, the user's shared objects that are not
        known to be there as they are, and the server's Spark ConfigMap."""
        assert self.spec is not None
        namespace, *shared = objects.namespace_objects(self.spec)
        existed = await self._apply(namespace) == "existed"
        self.fresh_namespace = not existed
        if self.fresh_namespace:
            self._pvc_exists = False  # whatever the state says, the claim went with it
        writes = [m for m in shared if apply.needs_write(m, self.applied, existed)]
        if len(writes) < len(shared):
            self.log.debug(
                "%s: %d shared objects unchanged, not written",
                self._log_name,
                len(shared) - len(writes),
            )
        config_map = objects.spark_config_map(self.spec)
        await apply.gather_all(
            *(self._apply_in_order(c) for c in apply.chains(writes)), self._apply(config_map)
        )
        self.applied = apply.remember(self.applied if existed else {}, writes)

    def _model(self, manifest: dict, model: str) -> Any:
        """A dict manifest as the client's typed model (KubeSpawner reads its attributes)."""
        return self.api.api_client.deserialize(_Body(manifest), model)

    def get_pvc_manifest(self) -> V1PersistentVolumeClaim:
        assert self.spec is not None
        return self._model(objects.persistent_volume_claim(self.spec), "V1PersistentVolumeClaim")

    async def _grow_claim(self) -> None:
        """A larger tier grows the claim (where the StorageClass allows); never shrink."""
        assert self.spec is not None
        if self.fresh_namespace:  # this spawn created the claim, at the tier's size
            return
        claim = await self.api.read_namespaced_persistent_volume_claim(
            self.pvc_name, self.namespace
        )
        have = parse_quantity(claim.spec.resources.requests["storage"])
        want = self.spec.tier.storage
        if want > have:
            patch = {"spec": {"resources": {"requests": {"storage": str(want)}}}}
            try:
                await self.api.patch_namespaced_persistent_volume_claim(
                    self.pvc_name, self.namespace, patch
                )
                self.log.info("Grew %s from %s to %s bytes", self.pvc_name, have, want)
            except ApiException as error:
                self.log.warning("Could not grow %s: %s", self.pvc_name, error.reason)
        elif want < have:
            self.log.info(
                "Keeping %s at %s bytes: volumes never shrink (tier asks %s)",
                self.pvc_name,
                have,
                want,
            )

    async def get_pod_manifest(self) -> V1Pod:
        assert self.spec is not None
        await self._grow_claim()
        return self._model(objects.pod(self.spec), "V1Pod")

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
            raise SpawnRefused(problem, reason="pod", status_code=500)
        return super().is_pod_running(pod)

    async def _make_create_pvc_request(
        self, pvc: V1PersistentVolumeClaim, request_timeout: int
    ) -> bool:
        try:
            return await super()._make_create_pvc_request(pvc, request_timeout)
        except ApiException as error:
            if self._retry_later(error, "creating the claim"):
                return False
            raise

    def _retry_later(self, error: ApiException, doing: str) -> bool:
        """Whether KubeSpawner's create loop should try again after ``error`` (and the
        error the user hears of if it never stops)."""
        if not worth_retrying(error):
            return False
        self.last_api_error = f"{error.status} {error.reason} {doing}"
        self.log.warning("%s, retrying", self.last_api_error)
        return True

    async def _make_create_pod_request(self, pod: V1Pod, request_timeout: int) -> bool:
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except ApiException as error:
            if self._retry_later(error, "creating the pod"):
                return False
            if error.status == 403 and "exceeded quota" in (error.body or ""):
                message = json.loads(error.body).get("message", error.reason)
                raise SpawnRefused(
                    f"This server does not fit in your tier's quota: {message}. "
                    "Stop another server or choose a smaller size.",
                    reason="quota",
                    status_code=403,
                ) from None
            raise

    @staticmethod
    async def _after_pod_created(spawner: ZeppelinSpawner, pod: dict) -> None:
        """The driver's headless Service, and the Spark ConfigMap, owned by the pod."""
        assert spawner.spec is not None
        uid = pod["metadata"]["uid"]
        owner = {"metadata": {"ownerReferences": objects.owned_by_pod(spawner.spec, uid)}}
        await apply.gather_all(
            spawner._apply(objects.driver_service(spawner.spec, uid)),
            spawner.api.patch_namespaced_config_map(
                spawner.spec.config_map, spawner.namespace, owner
            ),
        )

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

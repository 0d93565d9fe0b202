"""How the ZeppelinSpawner writes a server's objects: which API each kind goes to, in
which stages they can be written concurrently, and which need no write at all.

Pure decisions only (the spawner does the I/O). A spawn writes in stages: the namespace
first (everything else lives in it); then, concurrently, the objects shared by the
user's servers and the server's Spark ConfigMap; then (KubeSpawner's steps) the claim
and the pod, which mounts all of it; then, concurrently, what the pod owns.

The hub's ServiceAccount may create and update the shared objects but not read them
(the chart's ClusterRole), so "unchanged" cannot be asked of the API server. Instead the
spawner remembers, in its state, a digest of each shared object it wrote; while the
namespace already existed (the shared objects are only ever deleted with it) an object
whose digest is the same is not written again. A failed spawn forgets them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# kind → (API group object the spawner holds, the client's method suffix)
KIND_API = {
    "Namespace": ("core", "namespace"),
    "ServiceAccount": ("core", "namespaced_service_account"),
    "ResourceQuota": ("core", "namespaced_resource_quota"),
    "ConfigMap": ("core", "namespaced_config_map"),
    "Service": ("core", "namespaced_service"),
    "Role": ("rbac", "namespaced_role"),
    "RoleBinding": ("rbac", "namespaced_role_binding"),
    "NetworkPolicy": ("networking", "namespaced_network_policy"),
}
# the API server refuses writes in a namespace whose new quota it has not counted yet;
# the quota controller counts it within moments, so such a refusal is worth another try
QUOTA_NOT_COUNTED = "status unknown for quota"


def object_key(manifest: Mapping) -> str:
    """What an object is remembered by in the spawner's state (one namespace per user)."""
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def digest(manifest: Mapping) -> str:
    """A short fingerprint of everything written (any change in the manifest changes it)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def needs_write(manifest: Mapping, applied: Mapping[str, str], namespace_existed: bool) -> bool:
    """Whether a shared object must be written: always in a namespace just created (its
    objects cannot exist yet, whatever was remembered), else when it differs from what
    was last written."""
    return not namespace_existed or applied.get(object_key(manifest)) != digest(manifest)


def chains(manifests: Iterable[Mapping]) -> list[list[Mapping]]:
    """``manifests`` in chains that can be written concurrently, each in its order: a
    RoleBinding after the Role it names (the API server checks that the hub holds every
    permission it grants, so the Role must exist first); every other object alone."""
    found: list[list[Mapping]] = []
    roles: dict[str, list[Mapping]] = {}
    for manifest in manifests:
        ref = manifest.get("roleRef") or {}
        if (
            manifest["kind"] == "RoleBinding"
            and ref.get("kind") == "Role"
            and ref.get("name") in roles
        ):
            roles[ref["name"]].append(manifest)
            continue
        found.append([manifest])
        if manifest["kind"] == "Role":
            roles[manifest["metadata"]["name"]] = found[-1]
    return found


def remember(applied: Mapping[str, str], manifests: Iterable[Mapping]) -> dict[str, str]:
    """``applied`` with ``manifests`` recorded as written."""
    return {**applied, **{object_key(m): digest(m) for m in manifests}}


def quota_not_counted(status: int, body: str | None) -> bool:
    """A 403 because a just-created ResourceQuota has no usage yet (not an exceeded one)."""
    return status == 403 and QUOTA_NOT_COUNTED in (body or "")


async def gather_all(*steps: Awaitable[T]) -> list[T]:
    """Run ``steps`` concurrently and wait for every one of them before raising the first
    failure, so nothing is still being created while a failed spawn is cleaned up."""
    results: list[Any] = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results

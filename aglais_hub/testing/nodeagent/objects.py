"""What a pod refers to (ConfigMaps, Secrets, claims, volumes, ServiceAccount tokens),
read through the API as the node: the Node authorizer lets a node read exactly the
objects that pods bound to it refer to, and nothing else."""

from __future__ import annotations

import base64

from .client import ApiClient, ApiError, quote


class PodObjects:
    """The objects one pod refers to, fetched once per pod start (a kubelet caches too)."""

    def __init__(self, client: ApiClient, namespace: str):
        self.client = client
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict | None] = {}

    async def _get(self, kind: str, name: str) -> dict | None:
        key = (kind, name)
        if key not in self._cache:
            try:
                obj = await self.client.get(
                    f"/api/v1/namespaces/{self.namespace}/{kind}/{quote(name)}"
                )
            except ApiError as error:
                if error.status != 404:
                    raise
                obj = None
            self._cache[key] = obj
        return self._cache[key]

    def forget(self) -> None:
        self._cache.clear()

    async def config_map(self, name: str) -> dict[str, bytes] | None:
        """A ConfigMap's keys (data and binaryData) as bytes; None if it does not exist."""
        obj = await self._get("configmaps", name)
        if obj is None:
            return None
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def secret(self, name: str) -> dict[str, bytes] | None:
        obj = await self._get("secrets", name)
        if obj is None:
            return None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    async def services(self) -> list[dict]:
        """The Services of the pod's namespace now (not cached: service links are taken
        at each container start). The Node authorizer lets a node read every Service."""
        listing = await self.client.get(f"/api/v1/namespaces/{self.namespace}/services")
        return listing.get("items") or []

    async def claim(self, name: str) -> dict | None:
        return await self._get("persistentvolumeclaims", name)

    async def volume(self, name: str) -> dict | None:
        try:
            return await self.client.get(f"/api/v1/persistentvolumes/{quote(name)}")
        except ApiError as error:
            if error.status in (403, 404):  # the authorizer's graph may lag the binding
                return None
            raise

    async def token(self, pod: dict, audience: str | None, seconds: int) -> dict:
        """A TokenRequest for the pod's ServiceAccount, bound to the pod."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        bound = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
        spec: dict = {"expirationSeconds": seconds, "boundObjectRef": bound}
        if audience:
            spec["audiences"] = [audience]
        answer = await self.client.post(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{quote(account)}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return answer["status"]

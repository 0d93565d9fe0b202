"""A pod's volumes as directories (ours, in place of a kubelet's volume manager).

- ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (including the
  ``serviceAccountToken`` source, requested through TokenRequest bound to the pod, and
  renewed at 80 % of its life): files written under the pod's directory, with their modes.
- ``emptyDir``: a directory of the pod's own.
- ``persistentVolumeClaim``: the bound PersistentVolume's directory (``hostPath`` or
  ``local`` path, as our provisioner makes them).
- ``csi`` and ``nfs`` (science data): a directory under the agents' shared directory,
  named by driver and share (or server and path), the same for every pod and node.
- ``hostPath`` in a pod spec: a directory of the pod's own, never the machine's path.

Not done: updating configMap/secret files after a change, ``subPathExpr``, generic
``ephemeral`` volumes (their controller is not run), read-only enforcement, ownership
(``fsGroup``) and any volume plugin beyond the above.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .env import ConfigError, PodPlace, field_value, resource_value
from .objects import PodObjects

log = logging.getLogger(__name__)
DEFAULT_MODE = 0o644
TOKEN_SECONDS = 3607


class MountError(Exception):
    """What a kubelet reports as FailedMount (and retries)."""


@dataclass
class TokenFile:
    path: Path
    audience: str | None
    seconds: int
    mode: int
    renew_at: float = 0.0  # time.monotonic()


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(mode)
    partial.replace(path)  # a reader never sees half a file


class PodVolumes:
    def __init__(
        self, objects: PodObjects, pod: dict, directory: Path, place: PodPlace, shared_dir: Path
    ):
        self.objects = objects
        self.pod = pod
        self.directory = directory
        self.place = place
        self.shared_dir = shared_dir
        self.tokens: list[TokenFile] = []

    async def prepare(self) -> dict[str, Path]:
        """Volume name → directory; MountError while one cannot be set up yet."""
        self.objects.forget()
        self.tokens = []
        directories = {}
        for volume in self.pod["spec"].get("volumes") or []:
            directories[volume["name"]] = await self._one(volume)
        return directories

    def _own(self, name: str) -> Path:
        path = self.directory / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def _one(self, volume: dict) -> Path:
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            return await self._claim(volume["persistentVolumeClaim"]["claimName"])
        if "configMap" in volume or "secret" in volume:
            target = self._own(name)
            kind = "configMap" if "configMap" in volume else "secret"
            source = volume[kind]
            mode = source.get("defaultMode", DEFAULT_MODE)
            await self._keys(
                target,
                kind,
                {**source, "name": source.get("name") or source.get("secretName")},
                mode,
            )
            return target
        if "downwardAPI" in volume:
            target = self._own(name)
            source = volume["downwardAPI"]
            self._downward(
                target, source.get("items") or [], source.get("defaultMode", DEFAULT_MODE)
            )
            return target
        if "projected" in volume:
            return await self._projected(self._own(name), volume["projected"])
        if "csi" in volume:
            csi = volume["csi"]
            share = (csi.get("volumeAttributes") or {}).get("share") or name
            return self._shared("csi", csi.get("driver", "csi"), share)
        if "nfs" in volume:
            nfs = volume["nfs"]
            return self._shared("nfs", nfs.get("server", "nfs"), nfs.get("path", "/").strip("/"))
        if "ephemeral" in volume:
            raise MountError(
                f"volume {name}: generic ephemeral volumes are not supported "
                "by the aglais node agent"
            )
        return self._own(name)  # emptyDir, hostPath (a directory of the pod's own), …

    def _shared(self, *parts: str) -> Path:
        path = self.shared_dir.joinpath(*(p.replace("/", "_") or "_" for p in parts))
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def _claim(self, claim_name: str) -> Path:
        claim = await self.objects.claim(claim_name)
        if claim is None:
            raise MountError(f'persistentvolumeclaim "{claim_name}" not found')
        if (claim.get("status") or {}).get("phase") != "Bound":
            raise MountError(f'persistentvolumeclaim "{claim_name}" is not bound')
        volume_name = claim["spec"].get("volumeName")
        volume = await self.objects.volume(volume_name) if volume_name else None
        if volume is None:
            raise MountError(
                f'persistentvolume "{volume_name}" of claim "{claim_name}" cannot be read yet'
            )
        spec = volume["spec"]
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise MountError(
                f'persistentvolume "{volume_name}": the aglais node agent mounts '
                "only hostPath and local volumes"
            )
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    async def _keys(self, target: Path, kind: str, source: dict, mode: int) -> None:
        """The keys of a ConfigMap or Secret as files (all keys, or the items listed)."""
        getter = self.objects.config_map if kind == "configMap" else self.objects.secret
        data = await getter(source["name"])
        if data is None:
            if source.get("optional"):
                return
            raise MountError(f'{kind.lower()} "{source["name"]}" not found')
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise MountError(
                    f"configmap references non-existent config key: {item['key']}"
                    if kind == "configMap"
                    else f"references non-existent secret key: {item['key']}"
                )
            _write(target / item["path"], data[item["key"]], item.get("mode", mode))

    def _downward(self, target: Path, items: list[dict], mode: int) -> None:
        for item in items:
            try:
                if "fieldRef" in item:
                    value = field_value(self.pod, item["fieldRef"]["fieldPath"], self.place)
                else:
                    ref = item["resourceFieldRef"]
                    containers = self.pod["spec"].get("containers") or []
                    container = next(
                        (c for c in containers if c["name"] == ref.get("containerName")),
                        containers[0] if containers else {},
                    )
                    value = resource_value(container, ref, self.place)
            except ConfigError as error:
                raise MountError(str(error)) from None
            _write(target / item["path"], value.encode(), item.get("mode", mode))

    async def _projected(self, target: Path, projected: dict) -> Path:
        mode = projected.get("defaultMode", DEFAULT_MODE)
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                entry = TokenFile(
                    target / token["path"],
                    token.get("audience"),
                    token.get("expirationSeconds", TOKEN_SECONDS),
                    mode,
                )
                await self._request_token(entry)
                self.tokens.append(entry)
            elif "configMap" in source or "secret" in source:
                kind = "configMap" if "configMap" in source else "secret"
                await self._keys(target, kind, source[kind], mode)
            elif "downwardAPI" in source:
                self._downward(target, source["downwardAPI"].get("items") or [], mode)
            else:
                log.warning("projected source %s is not supported", sorted(source))
        return target

    async def _request_token(self, entry: TokenFile) -> None:
        status = await self.objects.token(self.pod, entry.audience, entry.seconds)
        expires = datetime.datetime.fromisoformat(
            status["expirationTimestamp"].replace("Z", "+00:00")
        )
        life = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
        entry.renew_at = time.monotonic() + 0.8 * max(life, 10)
        _write(entry.path, status["token"].encode(), entry.mode)

    async def renew_tokens(self) -> None:
        """Runs while the pod runs: each token is requested again at 80 % of its life."""
        while True:
            await asyncio.sleep(5)
            for entry in self.tokens:
                if time.monotonic() >= entry.renew_at:
                    try:
                        await self._request_token(entry)
                    except Exception as error:  # noqa: BLE001 - tried again in 5 s
                        log.warning("renewing %s failed: %s", entry.path, error)

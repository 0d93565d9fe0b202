"""The Events a kubelet records about pods (core/v1, source ``kubelet``, host = node).
Ours; no aggregation or rate limiting (a kubelet counts repeats into one Event)."""

from __future__ import annotations

import logging
import time

from .client import ApiClient
from .node import now

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, client: ApiClient, node: str):
        self.client = client
        self.node = node

    async def pod(
        self,
        pod: dict,
        reason: str,
        message: str,
        kind: str = "Normal",
        field_path: str | None = None,
    ) -> None:
        meta = pod["metadata"]
        stamp = now()
        involved = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name'][:235]}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        }
        try:
            await self.client.post(f"/api/v1/namespaces/{meta['namespace']}/events", event)
        except Exception as error:  # noqa: BLE001 - an event lost is not worth a pod
            log.warning(
                "event %s for %s/%s not recorded: %s",
                reason,
                meta["namespace"],
                meta["name"],
                error,
            )

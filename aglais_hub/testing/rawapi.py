"""Plain HTTP against a Kubernetes API server, for tests that check exact responses."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import requests

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "a", "tier": "x"}},
    "spec": {"containers": [{"name": "c", "image": "inert/image"}]},
}
Answer = tuple[int, Any]


class Api:
    """Requests to the API server; each answer is (status code, parsed JSON or text)."""

    def __init__(self, url: str):
        self.url = url

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        **params: str,
    ) -> Answer:
        data = json.dumps(body) if body is not None else None
        r = requests.request(
            method,
            self.url + path,
            data=data,
            params=params or None,
            headers={"Content-Type": content_type},
            timeout=30,
        )
        is_json = r.content and "json" in r.headers.get("Content-Type", "")
        return r.status_code, (r.json() if is_json else r.text)

    def get(self, path: str, **params: str) -> Answer:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any, **params: str) -> Answer:
        return self.request("POST", path, body, **params)

    def put(self, path: str, body: Any) -> Answer:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, content_type: str) -> Answer:
        return self.request("PATCH", path, body, content_type)

    def delete(self, path: str, body: Any = None, **params: str) -> Answer:
        return self.request("DELETE", path, body, **params)

    def pod(
        self, name: str = "p", labels: dict | None = None, ns: str = "default", **spec: Any
    ) -> Answer:
        """Create a pod (an inert container unless ``containers`` is given)."""
        body = copy.deepcopy(POD)
        body["metadata"] = {"name": name, "labels": labels if labels is not None else {"app": "a"}}
        body["spec"].update(spec)
        return self.post(f"/api/v1/namespaces/{ns}/pods", body)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; return its value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def claim(name: str, size: str, storage_class: str | None = None) -> dict:
    """A PersistentVolumeClaim manifest."""
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}

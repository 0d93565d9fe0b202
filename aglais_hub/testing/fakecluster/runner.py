"""Run a FakeCluster on its own event loop in a background thread.

Tests and commands that use blocking clients (pyspark, the `kubernetes` client,
subprocesses) get a handle whose ``call`` runs a function inside the cluster's
loop, so the cluster is only ever touched from its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import FakeCluster

T = TypeVar("T")


class ClusterThread:
    """A started FakeCluster serving from a daemon thread."""

    def __init__(self, **options: Any):
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.cluster: FakeCluster | None = None
        self._thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="fake-cluster"
        )

    def start(self) -> ClusterThread:
        self._thread.start()
        self.cluster = self._run(FakeCluster(**self.options).start())
        return self

    def _run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` on the cluster's loop; return its result."""

        async def invoke() -> T:
            result = func(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return self._run(invoke())

    @property
    def url(self) -> str:
        assert self.cluster is not None
        return self.cluster.url

    def write_kubeconfig(self, path: Path | str, namespace: str = "default") -> Path:
        assert self.cluster is not None
        return self.cluster.write_kubeconfig(path, namespace)

    def stop(self) -> list[int]:
        """Stop the cluster and its loop; return PIDs of pod processes still alive."""
        if self.cluster is None:
            return []
        self._run(self.cluster.stop())
        alive = self.cluster.kubelet.live_processes()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        return alive

    def __enter__(self) -> ClusterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

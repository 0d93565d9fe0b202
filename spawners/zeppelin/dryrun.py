"""``aglais-hub render-pod``: every object a spawn would create, made by the spawner itself.

The dry run builds a real `ZeppelinSpawner` from the hub's own config (`hub_config`),
so names, labels, sizes and owner references come from the same code as a spawn's
(`ZeppelinSpawner.server_spec_for`, then `objects.build_objects`). It never calls the
Kubernetes API: KubeSpawner loads a client configuration when it is made, so, with
none to load, it is given a kubeconfig that points nowhere.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from aglais_hub.hubconfig import hub_config
from aglais_hub.offering import ClusterSize, sized

from . import objects

# what stands where a spawn has values only the hub or the API server makes
TOKEN_PLACEHOLDER = "<made by the hub at spawn time>"
POD_UID_PLACEHOLDER = "<the pod's uid, given by the API server>"
NOWHERE = "https://render-pod.invalid"


@dataclass
class DryRunUser:
    """The hub user a dry run renders for: what KubeSpawner reads of a user."""

    name: str
    id: int = 0

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"


@dataclass
class DryRunServer:
    """The hub's record of the server (a named server's name is read from it)."""

    name: str = ""
    display_name: str = ""
    server: None = None  # not running: no address yet


@contextmanager
def client_configuration() -> Iterator[None]:
    """A Kubernetes client configuration KubeSpawner can load: the one there is (a
    kubeconfig, or in a cluster), else, for the block, a kubeconfig whose cluster is at
    an address that never resolves. The Kubernetes client reads KUBECONFIG when it is
    first imported, so this must run before that (render-pod's own process)."""
    found = os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists()
    if found or "KUBERNETES_SERVICE_HOST" in os.environ:
        yield
        return
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "render-pod",
        "clusters": [{"name": "render-pod", "cluster": {"server": NOWHERE}}],
        "users": [{"name": "render-pod", "user": {"token": "none"}}],
        "contexts": [
            {"name": "render-pod", "context": {"cluster": "render-pod", "user": "render-pod"}}
        ],
    }
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        os.environ["KUBECONFIG"] = str(path)
        try:
            yield
        finally:
            os.environ.pop("KUBECONFIG", None)


def render_server(
    values: Mapping,
    username: str,
    groups: Iterable[str],
    server_name: str = "",
    profile: str | None = None,
    booked: str | None = None,
    user_id: int = 0,
) -> list[dict]:
    """The objects of one spawn of ``username``'s server, as they stand once its pod runs.

    ``profile`` is the spawn form's size; ``booked`` the named size of a booking the
    server runs (then the tier's per-server limits grow to it and the server runs its
    flavour, as at a booked spawn).
    Raises ProfileRefused for a size the user's tier may not use, or one there is not.
    """
    config = hub_config(dict(values))
    offering = config.ZeppelinSpawner.offering
    tier = offering.tier_for_groups(groups)
    size: ClusterSize | None = None
    if booked:
        # any size may be booked for anyone (an admin books above a tier): no tier check
        size = offering.named_size(booked).cluster
        tier = sized(tier, size)
    prefix = f"/user/{username}/{server_name + '/' if server_name else ''}"
    # what the hub passes; tokens are made per spawn, so placeholders stand in
    env = {
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_USER": username,
        "JUPYTERHUB_API_TOKEN": TOKEN_PLACEHOLDER,
    }

    async def render() -> list[dict]:
        from .spawner import ZeppelinSpawner  # imports the Kubernetes client

        spawner = ZeppelinSpawner(
            config=config, user=DryRunUser(username, user_id), orm_spawner=DryRunServer(server_name)
        )
        flavour = offering.booked_flavour(booked)  # a booking's server runs its size's
        spec = spawner.server_spec_for(tier, profile, size, env, flavour=flavour)
        return objects.build_objects(spec, POD_UID_PLACEHOLDER)

    with client_configuration():
        return asyncio.run(render())

"""How the ZeppelinSpawner writes a user's objects (spawners.zeppelin.apply): in stages,
concurrently where nothing depends on anything, and the user's shared objects only when
they changed or their namespace is new. No cluster: the writes are recorded."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest

from aglais_hub.config import apply_defaults
from aglais_hub.offering import ClusterSize, offering_from_values
from aglais_hub.testing.platform import demo_values
from spawners.zeppelin import apply, objects
from spawners.zeppelin.spawner import ZeppelinSpawner
from spawners.zeppelin.spec import kubernetes_settings


@pytest.fixture(scope="module")
def spec() -> objects.ServerSpec:
    values = apply_defaults(
        demo_values(spawner={"kind": "zeppelin"}, auth={"defaultTier": "standard"})
    )
    offering = offering_from_values(values)
    tier = offering.tier_for_groups([])
    return objects.ServerSpec(
        username="alice",
        server_name="",
        namespace="aglais-alice",
        pod_name="zeppelin-alice",
        pvc_name="claim-alice",
        tier=tier,
        size=ClusterSize.from_tier(tier),
        settings=kubernetes_settings(values),
        overhead=offering.overhead,
    )


def test_a_digest_is_the_content_not_the_order_of_keys(spec):
    quota = objects.resource_quota(spec)
    shuffled = dict(reversed(list(quota.items())))
    assert apply.digest(quota) == apply.digest(shuffled)
    bigger = replace(spec, tier=replace(spec.tier, storage=spec.tier.storage * 2))
    assert apply.digest(objects.resource_quota(bigger)) != apply.digest(quota)
    assert apply.object_key(quota) == "ResourceQuota/tier-quota"


def test_shared_objects_are_written_when_new_changed_or_their_namespace_is_new(spec):
    role = objects.role(spec)
    applied = apply.remember({}, [role])
    assert not apply.needs_write(role, applied, namespace_existed=True)
    assert apply.needs_write(role, applied, namespace_existed=False)
    assert apply.needs_write(objects.role_binding(spec), applied, namespace_existed=True)
    changed = {**role, "rules": role["rules"][:1]}
    assert apply.needs_write(changed, applied, namespace_existed=True)


def test_a_role_binding_waits_for_its_role_and_the_rest_goes_at_once(spec):
    shared = objects.namespace_objects(spec)[1:]
    chains = apply.chains(shared)
    assert [[m["kind"] for m in chain] for chain in chains] == [
        ["ServiceAccount"],
        ["Role", "RoleBinding"],
        ["ResourceQuota"],
        ["NetworkPolicy"],
    ]
    alone = apply.chains([objects.role_binding(spec)])  # its Role is not being written
    assert [[m["kind"] for m in chain] for chain in alone] == [["RoleBinding"]]


def test_only_an_uncounted_new_quota_is_worth_another_try():
    uncounted = (
        '{"message": "pods \\"zeppelin-alice\\" is forbidden: status unknown for '
        'quota: tier-quota, resources: limits.cpu"}'
    )
    assert apply.quota_not_counted(403, uncounted)
    assert not apply.quota_not_counted(403, '{"message": "exceeded quota: tier-quota"}')
    assert not apply.quota_not_counted(403, None)
    assert not apply.quota_not_counted(409, uncounted)


def test_gather_all_waits_for_every_step_before_raising():
    finished = []

    async def slow() -> str:
        await asyncio.sleep(0.05)
        finished.append("slow")
        return "slow"

    async def failing() -> None:
        raise ValueError("refused")

    async def both() -> None:
        await apply.gather_all(failing(), slow())

    with pytest.raises(ValueError, match="refused"):
        asyncio.run(both())
    assert finished == ["slow"]  # nothing was still being written when it raised
    assert asyncio.run(apply.gather_all(slow())) == ["slow"]


class Recorder:
    """Stands for the API: records each write; the namespace exists once made."""

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.writes: list[str] = []

    async def __call__(self, manifest: dict) -> str:
        await asyncio.sleep(0)
        self.writes.append(apply.object_key(manifest))
        if manifest["kind"] == "Namespace":
            name = manifest["metadata"]["name"]
            existed = name in self.namespaces
            self.namespaces.add(name)
            return "existed" if existed else "created"
        return "created"


def spawner_for(spec: objects.ServerSpec, recorder: Recorder) -> ZeppelinSpawner:
    spawner = ZeppelinSpawner.__new__(ZeppelinSpawner)  # no hub, no Kubernetes client
    spawner.user = SimpleNamespace(name=spec.username)
    spawner.log = logging.getLogger("test")
    spawner.spec = spec
    spawner._apply = recorder  # type: ignore[method-assign]
    return spawner


def test_a_second_spawn_writes_only_the_server_s_own_objects(spec):
    recorder = Recorder()
    spawner = spawner_for(spec, recorder)
    asyncio.run(spawner._ensure_namespace())
    every = [apply.object_key(m) for m in objects.namespace_objects(spec)]
    assert sorted(recorder.writes) == sorted([*every, f"ConfigMap/{spec.config_map}"])
    assert recorder.writes[0] == "Namespace/aglais-alice"  # everything else lives in it
    assert recorder.writes.index("Role/spark-driver") < recorder.writes.index(
        "RoleBinding/spark-driver"
    )
    assert spawner.fresh_namespace and spawner._pvc_exists is False

    recorder.writes.clear()
    asyncio.run(spawner._ensure_namespace())
    assert recorder.writes == ["Namespace/aglais-alice", f"ConfigMap/{spec.config_map}"]
    assert not spawner.fresh_namespace

    # a larger tier changes the quota (and only the quota)
    recorder.writes.clear()
    spawner.spec = replace(spec, tier=replace(spec.tier, storage=spec.tier.storage * 2))
    asyncio.run(spawner._ensure_namespace())
    assert recorder.writes == [
        "Namespace/aglais-alice",
        "ResourceQuota/tier-quota",
        f"ConfigMap/{spec.config_map}",
    ]


def test_a_new_namespace_or_a_failed_spawn_means_everything_is_written_again(spec):
    recorder = Recorder()
    spawner = spawner_for(spec, recorder)
    asyncio.run(spawner._ensure_namespace())
    recorder.namespaces.clear()  # an administrator deleted the namespace
    recorder.writes.clear()
    asyncio.run(spawner._ensure_namespace())
    assert len(recorder.writes) == 7

    spawner.stop = lambda now=False: asyncio.sleep(0)  # type: ignore[method-assign]
    asyncio.run(spawner._clean_up_failed_spawn())
    assert spawner.applied == {}
    recorder.writes.clear()
    asyncio.run(spawner._ensure_namespace())
    assert len(recorder.writes) == 7


def test_a_failed_spawn_s_clean_up_waits_for_an_api_server_that_is_away(spec):
    from kubernetes_asyncio.client.rest import ApiException

    spawner = spawner_for(spec, Recorder())
    spawner.k8s_api_request_retry_timeout = 1  # shorter than the clean-up's own patience
    answers = [ApiException(status=503), OSError("refused"), None]
    stops = []

    async def stop(now: bool = False) -> None:
        stops.append(now)
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    spawner.stop = stop  # type: ignore[method-assign]
    asyncio.run(spawner._clean_up_failed_spawn())
    assert stops == [True, True, True] and not answers

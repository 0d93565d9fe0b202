"""One footprint: for any tier and size, the namespace quota, the reservation service's
bookings and queue, the smallest-size choice and the pods a spawn creates count the
same cores and memory (`aglais_hub.offering.footprint`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aglais_hub.config import apply_defaults, validate
from aglais_hub.offering import ClusterSize, footprint, offering_from_values
from aglais_hub.quantity import parse_quantity
from aglais_hub.reservations.settings import settings_from_values
from aglais_hub.testing.platform import demo_values
from spawners.zeppelin import objects
from spawners.zeppelin.objects import KubernetesSettings

MIB = 2**20
mebibytes = st.integers(min_value=256, max_value=96 * 1024)  # 256 MiB .. 96 GiB


@st.composite
def cluster(draw: st.DrawFn, executors_key: str) -> dict:
    return {
        executors_key: draw(st.integers(0, 32)),
        "executorCores": draw(st.integers(1, 16)),
        "executorMemory": f"{draw(mebibytes)}Mi",
        "driverCores": draw(st.integers(1, 8)),
        "driverMemory": f"{draw(mebibytes)}Mi",
    }


@st.composite
def platform_values(draw: st.DrawFn) -> dict:
    """A valid values document with one random tier, two random sizes and a random
    Spark overhead."""
    tier = {
        "rank": 0,
        "concurrentServers": draw(st.integers(1, 4)),
        "storage": "1Gi",
        **draw(cluster("maxExecutors")),
    }
    sizes = {name: {**draw(cluster("executors")), "displayName": name} for name in ("a", "b")}
    overhead = {
        "memoryOverheadFactor": draw(st.sampled_from([0.06, 0.1, 0.25, 0.4])),
        "memoryOverheadMin": f"{draw(st.integers(100, 2048))}Mi",
    }
    values = demo_values(
        spawner={"kind": "zeppelin"},
        reservations=overhead,
        auth={"defaultTier": "t", "tierGroups": {}},
    )
    values["tiers"], values["sizes"] = {"t": tier}, sizes
    assert validate(values) == []
    return apply_defaults(values)


def spec_for(values: dict, size: ClusterSize) -> objects.ServerSpec:
    offering = offering_from_values(values)
    tier = offering.tiers["t"]
    return objects.ServerSpec(
        username="alice",
        server_name="",
        namespace="aglais-alice",
        pod_name="zeppelin-alice",
        pvc_name="claim-alice",
        tier=tier,
        size=size,
        settings=KubernetesSettings("zeppelin:test", "spark:test"),
        overhead=offering.overhead,
    )


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(quantity) * 1000


def created_by_a_spawn(spec: objects.ServerSpec) -> tuple[int, int]:
    """Cores (millis) and memory the spawn's pod requests, plus every executor pod
    Spark would start from the spawn's spark-defaults.conf at full size."""
    pod = objects.pod(spec)
    requests = [c["resources"]["requests"] for c in pod["spec"]["containers"]]
    assert len(requests) == 2  # the auth proxy and the notebook
    millis = sum(cpu_millis(r["cpu"]) for r in requests)
    memory = sum(int(r["memory"]) for r in requests)
    conf = objects.spark_properties(spec)  # what the ConfigMap's spark-defaults.conf holds
    executors = int(conf["spark.dynamicAllocation.maxExecutors"])
    # Spark sizes an executor pod as memory + memoryOverhead (both in MiB), and its cores
    executor_memory = sum(
        parse_quantity(conf[k][:-1] + "Mi")
        for k in ("spark.executor.memory", "spark.executor.memoryOverhead")
    )
    executor_millis = int(conf["spark.kubernetes.executor.limit.cores"]) * 1000
    return millis + executors * executor_millis, memory + executors * executor_memory


@settings(max_examples=60, deadline=None)
@given(platform_values())
def test_quota_bookings_queue_and_pods_count_one_footprint(values):
    offering = offering_from_values(values)
    service = settings_from_values(values)
    tier = offering.tiers["t"]
    own = ClusterSize.from_tier(tier)
    expected = footprint(own, offering.overhead)

    # the namespace quota: the tier's own size, once per server it may run
    hard = objects.resource_quota(spec_for(values, own))["spec"]["hard"]
    servers = tier.concurrent_servers
    assert cpu_millis(hard["requests.cpu"]) == servers * expected.millicores
    assert int(hard["requests.memory"]) == servers * expected.memory
    # the reservation service: an unbooked (queued) server, and every bookable size
    assert service.tier_offer(tier).need == expected
    assert sorted(service.offers) == ["a", "b"]
    for name, offer in service.offers.items():
        assert offer.need == footprint(offering.sizes[name].cluster, offering.overhead)
    # the pods a spawn creates, for the tier's size and for each named size
    for size in [own, *(s.cluster for s in offering.sizes.values())]:
        assert created_by_a_spawn(spec_for(values, size)) == (
            footprint(size, offering.overhead).millicores,
            footprint(size, offering.overhead).memory,
        )


@settings(max_examples=60, deadline=None)
@given(platform_values())
def test_the_smallest_size_is_the_least_footprint_the_tier_may_start(values):
    offering = offering_from_values(values)
    tier = offering.tiers["t"]
    candidates = [ClusterSize.from_tier(tier), *(s.cluster for s in offering.sizes.values())]
    assert len(candidates) == 3
    smallest = offering.smallest_size(tier)
    assert smallest in candidates
    assert all(offering.footprint(smallest) <= offering.footprint(c) for c in candidates)

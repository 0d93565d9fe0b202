"""Tiers: group → tier → limits. Pure functions, no I/O.

A user's tier is the highest-ranked tier any of their identity-provider groups maps
to (``auth.tierGroups``), else ``auth.defaultTier``. Limits come from ``tiers`` in
the values file; quantities are Kubernetes quantities ("512Mi", "2Gi").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .quantity import parse as quantity_value


def parse_quantity(quantity: str | int) -> int:
    """Bytes in a Kubernetes quantity: ``parse_quantity("2Gi") == 2147483648``."""
    if isinstance(quantity, int):
        return quantity
    try:
        return int(quantity_value(quantity))
    except ValueError:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}") from None


def spark_memory(quantity: str | int) -> str:
    """A quantity in Spark's notation, rounded down to whole MiB (at least 1m)."""
    return f"{max(1, parse_quantity(quantity) // 2**20)}m"


@dataclass(frozen=True)
class Tier:
    """The resource limits of one tier."""

    name: str
    rank: int
    display_name: str
    storage: int
    max_executors: int
    executor_cores: int
    executor_memory: int
    driver_cores: int
    driver_memory: int
    concurrent_servers: int
    booking_hours: int


def tier_from_values(name: str, spec: Mapping) -> Tier:
    """Build a Tier from one default-filled ``tiers.<name>`` entry."""
    return Tier(
        name=name,
        rank=spec["rank"],
        display_name=spec.get("displayName") or name,
        storage=parse_quantity(spec["storage"]),
        max_executors=spec["maxExecutors"],
        executor_cores=spec["executorCores"],
        executor_memory=parse_quantity(spec["executorMemory"]),
        driver_cores=spec["driverCores"],
        driver_memory=parse_quantity(spec["driverMemory"]),
        concurrent_servers=spec["concurrentServers"],
        booking_hours=spec["bookingHours"],
    )


MEMORY_OVERHEAD = 384 * 2**20  # Spark's minimum memory overhead per JVM
# The size name (spawn-form profile) meaning "what the user's tier gives", not a named size.
TIER_PROFILE = "tier"


@dataclass(frozen=True)
class ClusterSize:
    """What one server may use: a driver plus up to ``executors`` executors."""

    executors: int
    executor_cores: int
    executor_memory: int  # bytes
    driver_cores: int
    driver_memory: int  # bytes

    @classmethod
    def from_tier(cls, tier: Tier) -> ClusterSize:
        return cls(tier.max_executors, tier.executor_cores, tier.executor_memory,
                   tier.driver_cores, tier.driver_memory)  # fmt: skip

    @classmethod
    def from_values(cls, spec: Mapping) -> ClusterSize:
        """From one default-filled ``sizes.<name>`` entry."""
        return cls(spec["executors"], spec["executorCores"], parse_quantity(spec["executorMemory"]),
                   spec["driverCores"], parse_quantity(spec["driverMemory"]))  # fmt: skip

    @classmethod
    def from_limits(cls, limits: Mapping) -> ClusterSize:
        """From the ``limits`` the reservation service's spawn-check returns."""
        return cls(int(limits["executors"]), int(limits["executor_cores"]),
                   int(limits["executor_memory"]), int(limits["driver_cores"]),
                   int(limits["driver_memory"]))  # fmt: skip

    def as_limits(self) -> dict[str, int]:
        """The JSON form (the spawn-check's ``limits``)."""
        return {"executors": self.executors, "executor_cores": self.executor_cores,
                "executor_memory": self.executor_memory, "driver_cores": self.driver_cores,
                "driver_memory": self.driver_memory}  # fmt: skip

    def executor_pod_memory(self) -> int:
        return self.executor_memory + max(MEMORY_OVERHEAD, self.executor_memory // 10)


def resolve_tier(
    groups: Iterable[str],
    tier_groups: Mapping[str, str],
    ranks: Mapping[str, int],
    default: str,
) -> str:
    """The name of the highest-ranked tier any group maps to, else ``default``."""
    candidates = {tier_groups[g] for g in groups if g in tier_groups}
    candidates = {t for t in candidates if t in ranks}
    if not candidates:
        return default
    return max(candidates, key=lambda t: ranks[t])


def local_spark_cores(tier: Tier, machine_cores: int, cap: int = 0) -> int:
    """Cores for a local[n] Spark driver: the tier's executor cores, capped by the machine."""
    wanted = max(1, tier.max_executors * tier.executor_cores)
    limit = machine_cores if cap <= 0 else min(cap, machine_cores)
    return max(1, min(wanted, limit))


def sized(tier: Tier, size: ClusterSize) -> Tier:
    """The tier as one server sees it when a booking gives it ``size``.

    Per-server limits become the booked size; the namespace-wide ceilings built from
    them (the ResourceQuota) take the larger of the two, so a booked size bigger than
    the tier still fits and the user's other servers keep their room.
    """
    return replace(
        tier,
        max_executors=max(tier.max_executors, size.executors),
        executor_cores=max(tier.executor_cores, size.executor_cores),
        executor_memory=max(tier.executor_memory, size.executor_memory),
        driver_cores=max(tier.driver_cores, size.driver_cores),
        driver_memory=max(tier.driver_memory, size.driver_memory),
    )


def smallest_size(
    tier: Tier, sizes: Mapping[str, Mapping], ranks: Mapping[str, int]
) -> ClusterSize:
    """The smallest cluster (by cores, then memory) the tier may start: its own or a size."""
    candidates = [ClusterSize.from_tier(tier)]
    for spec in sizes.values():
        needed = spec.get("minTier")
        if needed is None or ranks.get(needed, 0) <= tier.rank:
            candidates.append(ClusterSize.from_values(spec))

    def weight(size: ClusterSize) -> tuple[int, int]:
        cores = size.driver_cores + size.executors * size.executor_cores
        memory = size.driver_memory + size.executors * size.executor_memory
        return cores, memory

    return min(candidates, key=weight)


def with_size(tier: Tier, size: ClusterSize) -> Tier:
    """The tier with its per-server limits replaced by exactly ``size``."""
    return replace(tier, max_executors=size.executors, executor_cores=size.executor_cores,
                   executor_memory=size.executor_memory, driver_cores=size.driver_cores,
                   driver_memory=size.driver_memory)  # fmt: skip

"""Tiers: group → tier → limits. Pure functions, no I/O.

A user's tier is the highest-ranked tier any of their identity-provider groups maps
to (``auth.tierGroups``), else ``auth.defaultTier``. Limits come from ``tiers`` in
the values file; quantities are Kubernetes quantities ("512Mi", "2Gi").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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

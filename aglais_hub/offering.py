"""What the platform offers: tiers, cluster sizes, and what a server of a size holds.

The one model of these, used by the hub (spawn form, spawners, namespace quotas), the
reservation service (bookings, the queue) and the local spawner. Pure: no I/O.

- A `Tier` is what a user's identity-provider groups give them: per-server limits,
  storage, how many servers at once, and their `BookingRules`.
- A `ClusterSize` is one server: a driver plus up to ``executors`` executors.
- A `Size` is a named size from the values file's ``sizes`` (the spawn form's
  profiles), with the lowest tier that may use it and the notebook flavour it runs.
- `footprint` is what a server of a size holds at full size, the same number for the
  namespace quota, a booking, the queue and the smallest-size choice.
- `Offering` holds them all, built once from the values file (`offering_from_values`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from .quantity import human_bytes, parse_quantity

# The size name (spawn-form profile) meaning "what the user's tier gives", not a named size.
TIER_PROFILE = "tier"
DEFAULT_FLAVOUR = "zeppelin"


class ProfileRefused(ValueError):
    """A profile the user's tier may not use (the message is for the user)."""


class UnknownSize(ProfileRefused):
    """A size name the values file does not define."""


@dataclass(frozen=True)
class BookingRules:
    """How a tier may book clusters (``tiers.<name>.booking*`` and ``activeBookings``)."""

    weekly_hours: float = 0  # 0: this tier cannot book
    max_hours: float = 8  # the longest single booking
    ahead_days: float = 14  # how far ahead a booking may start
    active: int = 2  # most pending or active bookings held at once


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
    booking: BookingRules = field(default_factory=BookingRules)


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
        booking=BookingRules(
            weekly_hours=spec["bookingHours"],
            max_hours=spec["bookingMaxHours"],
            ahead_days=spec["bookingAheadDays"],
            active=spec["activeBookings"],
        ),
    )


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
        return cls(
            tier.max_executors,
            tier.executor_cores,
            tier.executor_memory,
            tier.driver_cores,
            tier.driver_memory,
        )

    @classmethod
    def from_values(cls, spec: Mapping) -> ClusterSize:
        """From one default-filled ``sizes.<name>`` entry."""
        return cls(
            spec["executors"],
            spec["executorCores"],
            parse_quantity(spec["executorMemory"]),
            spec["driverCores"],
            parse_quantity(spec["driverMemory"]),
        )

    @classmethod
    def from_limits(cls, limits: Mapping) -> ClusterSize:
        """From the ``limits`` the reservation service's spawn-check returns."""
        return cls(
            int(limits["executors"]),
            int(limits["executor_cores"]),
            int(limits["executor_memory"]),
            int(limits["driver_cores"]),
            int(limits["driver_memory"]),
        )

    def as_limits(self) -> dict[str, int]:
        """The JSON form (the spawn-check's ``limits``)."""
        return {
            "executors": self.executors,
            "executor_cores": self.executor_cores,
            "executor_memory": self.executor_memory,
            "driver_cores": self.driver_cores,
            "driver_memory": self.driver_memory,
        }


@dataclass(frozen=True, order=True)
class Resources:
    """CPU in millicores and memory in bytes (integers, so sums are exact)."""

    millicores: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.millicores + other.millicores, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.millicores - other.millicores, self.memory - other.memory)

    def __mul__(self, n: int) -> Resources:
        return Resources(self.millicores * n, self.memory * n)

    def fits_in(self, capacity: Resources) -> bool:
        return self.millicores <= capacity.millicores and self.memory <= capacity.memory

    def count_in(self, free: Resources) -> int:
        """How many of this footprint fit in ``free`` (0 when none)."""
        if free.millicores < 0 or free.memory < 0:
            return 0
        counts = []
        if self.millicores:
            counts.append(free.millicores // self.millicores)
        if self.memory:
            counts.append(free.memory // self.memory)
        return int(min(counts)) if counts else 0

    def describe(self) -> str:
        cores = self.millicores / 1000
        shown = f"{cores:g}" if cores == int(cores) else f"{cores:.1f}"
        noun = "core" if shown == "1" else "cores"
        return f"{shown} {noun} and {human_bytes(max(0, self.memory))}"

    def as_json(self) -> dict:
        return {"cores": self.millicores / 1000, "memory": self.memory}


def resources_from_values(spec: Mapping) -> Resources:
    """``{"cores": 16, "memory": "64Gi"}`` → Resources."""
    return Resources(round(float(spec["cores"]) * 1000), parse_quantity(spec["memory"]))


@dataclass(frozen=True)
class Overhead:
    """Spark's memory overhead on every JVM: max(factor × heap, minimum)."""

    factor: float = 0.1
    minimum: int = 384 * 2**20  # Spark's own minimum

    def extra(self, heap: int) -> int:
        """The overhead alone, in bytes: whole MiB, as Spark computes it."""
        return max(self.minimum, int(heap // 2**20 * self.factor) * 2**20)

    def of(self, heap: int) -> int:
        """A JVM's whole memory: its heap and the overhead."""
        return heap + self.extra(heap)


# The auth proxy in front of each notebook (a container of every server's pod).
AUTH_PROXY = Resources(100, 128 * 2**20)


def driver_resources(size: ClusterSize, overhead: Overhead) -> Resources:
    """The notebook container's requests and limits: the Spark driver's JVM."""
    return Resources(size.driver_cores * 1000, overhead.of(size.driver_memory))


def executor_resources(size: ClusterSize, overhead: Overhead) -> Resources:
    """One executor pod's requests and limits."""
    return Resources(size.executor_cores * 1000, overhead.of(size.executor_memory))


def footprint(size: ClusterSize, overhead: Overhead) -> Resources:
    """What a server of ``size`` holds at full size: its pod (auth proxy and driver)
    and every executor pod. The namespace quota, a booking, the queue and the
    smallest-size choice all count this."""
    executors = executor_resources(size, overhead) * size.executors
    return AUTH_PROXY + driver_resources(size, overhead) + executors


@dataclass(frozen=True)
class Size:
    """A named size from the values file's ``sizes``: a spawn-form profile users can
    start or book, the lowest tier that may use it, and the notebook it runs."""

    name: str
    display_name: str
    description: str
    cluster: ClusterSize
    min_tier: str | None = None
    flavour: str = DEFAULT_FLAVOUR


def size_from_values(name: str, spec: Mapping) -> Size:
    """A Size from one default-filled ``sizes.<name>`` entry."""
    return Size(
        name=name,
        display_name=spec.get("displayName") or name,
        description=spec.get("description", ""),
        cluster=ClusterSize.from_values(spec),
        min_tier=spec.get("minTier"),
        flavour=spec.get("flavour", DEFAULT_FLAVOUR),
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


@dataclass(frozen=True)
class Offering:
    """Every tier and size, the group → tier map and Spark's overhead, read once."""

    tiers: Mapping[str, Tier]
    sizes: Mapping[str, Size] = field(default_factory=dict)
    overhead: Overhead = Overhead()
    tier_groups: Mapping[str, str] = field(default_factory=dict)
    default_tier: str = "basic"

    @cached_property
    def ranks(self) -> dict[str, int]:
        """Tier name → rank (computed once)."""
        return {name: tier.rank for name, tier in self.tiers.items()}

    def tier_for_groups(self, groups: Iterable[str]) -> Tier:
        """The highest-ranked tier any of ``groups`` maps to, else the default tier."""
        name = resolve_tier(groups, self.tier_groups, self.ranks, self.default_tier)
        return self.tiers[name]

    def may_use(self, tier: Tier, size: Size) -> bool:
        """Whether ``tier`` may start or book ``size`` (its ``minTier`` or higher)."""
        return size.min_tier is None or self.tiers[size.min_tier].rank <= tier.rank

    def footprint(self, size: ClusterSize) -> Resources:
        return footprint(size, self.overhead)

    def named_size(self, name: str) -> Size:
        """The size called ``name``; UnknownSize, naming the sizes there are."""
        size = self.sizes.get(name)
        if size is None:
            known = ", ".join(sorted(self.sizes)) or "none"
            raise UnknownSize(f"There is no size '{name}' (sizes: {known}).")
        return size

    def check_may_use(self, tier: Tier, size: Size) -> None:
        """ProfileRefused, in the user's words, when ``tier`` may not use ``size``."""
        if not self.may_use(tier, size):
            needed = self.tiers[size.min_tier]  # type: ignore[index]
            raise ProfileRefused(
                f"The size '{size.display_name}' needs tier '{needed.display_name}' or "
                f"higher; your tier is '{tier.display_name}'."
            )

    def server_size(self, tier: Tier, profile: str | None) -> tuple[ClusterSize, str]:
        """The size a spawn of ``profile`` gets (the tier's own, or a named size) and
        its flavour; ProfileRefused, in the user's words, for one the tier may not use."""
        if not profile or profile == TIER_PROFILE:
            return ClusterSize.from_tier(tier), DEFAULT_FLAVOUR
        size = self.named_size(profile)
        self.check_may_use(tier, size)
        return size.cluster, size.flavour

    def booked_flavour(self, size_name: str | None) -> str | None:
        """The flavour of a booked size, which its server runs whatever the spawn form
        chose; None when ``size_name`` is not a size (any more): the form's then stands."""
        size = self.sizes.get(size_name or "")
        return size.flavour if size is not None else None

    def smallest_size(self, tier: Tier) -> ClusterSize:
        """The smallest cluster (by footprint: cores, then memory) the tier may start:
        its own or a size."""
        candidates = [ClusterSize.from_tier(tier)]
        candidates += [s.cluster for s in self.sizes.values() if self.may_use(tier, s)]
        return min(candidates, key=self.footprint)


def offering_from_values(values: Mapping) -> Offering:
    """The Offering of a validated, default-filled values document."""
    r, auth = values["reservations"], values["auth"]
    return Offering(
        tiers={name: tier_from_values(name, spec) for name, spec in values["tiers"].items()},
        sizes={name: size_from_values(name, s) for name, s in (values.get("sizes") or {}).items()},
        overhead=Overhead(r["memoryOverheadFactor"], parse_quantity(r["memoryOverheadMin"])),
        tier_groups=dict(auth["tierGroups"]),
        default_tier=auth["defaultTier"],
    )


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


def with_size(tier: Tier, size: ClusterSize) -> Tier:
    """The tier with its per-server limits replaced by exactly ``size``."""
    return replace(
        tier,
        max_executors=size.executors,
        executor_cores=size.executor_cores,
        executor_memory=size.executor_memory,
        driver_cores=size.driver_cores,
        driver_memory=size.driver_memory,
    )

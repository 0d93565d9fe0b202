"""The reservation service's view of the values file: sizes, tiers, capacity, timing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from aglais_hub.quotas import TIER_PROFILE, ClusterSize, Tier, parse_quantity, tier_from_values

from .policy import Overhead, Resources, footprint, resources_from_values


@dataclass(frozen=True)
class Offer:
    """A size users can book or start: its resources and who may use it."""

    name: str
    display_name: str
    description: str
    size: ClusterSize
    min_tier: str | None
    need: Resources

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "min_tier": self.min_tier,
            **self.size.as_limits(),
            "footprint": self.need.as_json(),
        }


@dataclass(frozen=True)
class Settings:
    """Everything the service decides with, read once from the values file."""

    offers: dict[str, Offer]
    tiers: dict[str, Tier]
    tier_rules: dict[str, Mapping]
    capacity: Resources
    reserve: Resources
    overhead: Overhead
    margin: timedelta
    warn: timedelta
    grace: timedelta
    tick: float
    queue_timeout: timedelta
    webhook_url: str
    tier_ranks: dict[str, int] = field(default_factory=dict)

    def may_use(self, tier: Tier, offer: Offer) -> bool:
        return offer.min_tier is None or self.tier_ranks[offer.min_tier] <= tier.rank

    def tier_offer(self, tier: Tier) -> Offer:
        """The size an unbooked server gets from the tier alone."""
        size = ClusterSize.from_tier(tier)
        return Offer(TIER_PROFILE, f"{tier.display_name} tier", "", size, None,
                     footprint(size, self.overhead))  # fmt: skip


def settings_from_values(values: Mapping) -> Settings:
    """Read the ``reservations``, ``sizes`` and ``tiers`` sections (default-filled)."""
    r = values["reservations"]
    overhead = Overhead(r["memoryOverheadFactor"], parse_quantity(r["memoryOverheadMin"]))
    offers = {}
    for name, spec in (values.get("sizes") or {}).items():
        size = ClusterSize.from_values(spec)
        offers[name] = Offer(name, spec.get("displayName") or name, spec.get("description", ""),
                             size, spec.get("minTier"), footprint(size, overhead))  # fmt: skip
    tiers = {name: tier_from_values(name, spec) for name, spec in values["tiers"].items()}
    return Settings(
        offers=offers,
        tiers=tiers,
        tier_rules={name: spec for name, spec in values["tiers"].items()},
        capacity=resources_from_values(r["capacity"]),
        reserve=resources_from_values(r["reserve"]),
        overhead=overhead,
        margin=timedelta(minutes=r["marginMinutes"]),
        warn=timedelta(minutes=r["warnMinutes"]),
        grace=timedelta(minutes=r["graceMinutes"]),
        tick=float(r["tickSeconds"]),
        queue_timeout=timedelta(minutes=r["queueTimeoutMinutes"]),
        webhook_url=r["webhookUrl"],
        tier_ranks={name: t.rank for name, t in tiers.items()},
    )

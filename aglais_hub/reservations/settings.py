"""The reservation service's view of the values file: sizes, tiers, capacity, timing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta

from aglais_hub.offering import (
    TIER_PROFILE,
    ClusterSize,
    Offering,
    Resources,
    Size,
    Tier,
    offering_from_values,
    resources_from_values,
)


@dataclass(frozen=True)
class Offer(Size):
    """A size users can book or start, with what a server of it holds (`need`)."""

    need: Resources = Resources()

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "min_tier": self.min_tier,
            **self.cluster.as_limits(),
            "footprint": self.need.as_json(),
        }


@dataclass(frozen=True)
class Settings:
    """Everything the service decides with, read once from the values file."""

    offering: Offering
    offers: dict[str, Offer]
    capacity: Resources
    reserve: Resources
    margin: timedelta
    warn: timedelta
    grace: timedelta
    tick: float
    queue_timeout: timedelta
    webhook_url: str

    @property
    def tiers(self) -> Mapping[str, Tier]:
        return self.offering.tiers

    def tier_offer(self, tier: Tier) -> Offer:
        """The size an unbooked server gets from the tier alone."""
        size = ClusterSize.from_tier(tier)
        return Offer(
            TIER_PROFILE, f"{tier.display_name} tier", "", size, need=self.offering.footprint(size)
        )


def offer_of(size: Size, offering: Offering) -> Offer:
    """A named size as the service shows and books it, with its footprint."""
    return Offer(
        **{f.name: getattr(size, f.name) for f in fields(Size)},
        need=offering.footprint(size.cluster),
    )


def settings_from_values(values: Mapping) -> Settings:
    """Read the ``reservations``, ``sizes`` and ``tiers`` sections (default-filled)."""
    r = values["reservations"]
    offering = offering_from_values(values)
    return Settings(
        offering=offering,
        offers={name: offer_of(size, offering) for name, size in offering.sizes.items()},
        capacity=resources_from_values(r["capacity"]),
        reserve=resources_from_values(r["reserve"]),
        margin=timedelta(minutes=r["marginMinutes"]),
        warn=timedelta(minutes=r["warnMinutes"]),
        grace=timedelta(minutes=r["graceMinutes"]),
        tick=float(r["tickSeconds"]),
        queue_timeout=timedelta(minutes=r["queueTimeoutMinutes"]),
        webhook_url=r["webhookUrl"],
    )

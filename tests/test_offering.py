"""Tiers, their resolution from groups, and quantities (pure functions)."""

from __future__ import annotations

import pytest

from aglais_hub.offering import local_spark_cores, resolve_tier, tier_from_values
from aglais_hub.quantity import parse_quantity, spark_memory
from spawners.sparkconf import format_spark_defaults, local_spark_defaults

RANKS = {"basic": 0, "standard": 10, "power": 20}
GROUP_TIERS = {"users": "standard", "power": "power", "guests": "basic", "ghost": "missing"}


@pytest.mark.parametrize(
    ("groups", "tier"),
    [
        ([], "basic"),
        (["unmapped"], "basic"),
        (["users"], "standard"),
        (["users", "power"], "power"),
        (["power", "users", "guests"], "power"),
        (["guests"], "basic"),
        (["ghost"], "basic"),  # a mapping to an unconfigured tier is ignored
    ],
)
def test_highest_ranked_tier_wins(groups, tier):
    assert resolve_tier(groups, GROUP_TIERS, RANKS, "basic") == tier


@pytest.mark.parametrize(
    ("quantity", "bytes_"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1.5Gi", int(1.5 * 2**30)),
        ("1G", 10**9),
        ("100", 100),
        (42, 42),
    ],
)
def test_parse_quantity(quantity, bytes_):
    assert parse_quantity(quantity) == bytes_


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("10GB")


def test_spark_memory_is_whole_mebibytes():
    assert spark_memory("2Gi") == "2048m"
    assert spark_memory("1G") == "953m"
    assert spark_memory("10") == "1m"


def tier(**spec):
    base = {
        "rank": 0,
        "storage": "1Gi",
        "maxExecutors": 2,
        "executorCores": 2,
        "executorMemory": "1Gi",
        "driverCores": 1,
        "driverMemory": "3Gi",
        "concurrentServers": 1,
        "bookingHours": 0,
        "bookingMaxHours": 8,
        "bookingAheadDays": 14,
        "activeBookings": 2,
    }
    return tier_from_values("t", {**base, **spec})


def test_local_cores_follow_the_tier_and_the_machine():
    assert local_spark_cores(tier(), machine_cores=16) == 4
    assert local_spark_cores(tier(), machine_cores=2) == 2
    assert local_spark_cores(tier(), machine_cores=16, cap=3) == 3
    assert local_spark_cores(tier(maxExecutors=0), machine_cores=16) == 1


def test_local_spark_defaults_carry_the_tier():
    text = format_spark_defaults(local_spark_defaults(tier(), cores=4))
    assert "spark.master local[4]\n" in text
    assert "spark.driver.memory 3072m\n" in text
    assert "spark.driver.bindAddress 127.0.0.1\n" in text

"""Spark configuration as pure functions: limits in, ``spark-defaults.conf`` out."""

from __future__ import annotations

from collections.abc import Mapping

from aglais_hub.offering import Tier
from aglais_hub.quantity import spark_memory


def local_spark_defaults(tier: Tier, cores: int) -> dict[str, str]:
    """Spark properties for a driver that runs its tasks in-process (``local[n]``)."""
    return {
        "spark.master": f"local[{cores}]",
        "spark.driver.memory": spark_memory(tier.driver_memory),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(max(2, cores * 2)),
    }


def format_spark_defaults(properties: Mapping[str, str]) -> str:
    """The text of a spark-defaults.conf file, keys sorted so diffs stay small."""
    lines = [f"{key} {value}" for key, value in sorted(properties.items())]
    return "# Written by Aglais Hub for this server; edits are lost at the next start.\n" + (
        "\n".join(lines) + "\n"
    )

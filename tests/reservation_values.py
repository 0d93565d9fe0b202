"""Values shared by the reservation tests: a platform of 8 cores and 64 GiB.

``small`` holds 3.1 cores (driver, 2 executors, auth proxy), so two fit side by side and a third
does not; ``large`` needs tier power; ``tiny`` holds 1.1 cores.
"""

from __future__ import annotations

import copy

from aglais_hub.config import apply_defaults, validate
from aglais_hub.testing.platform import demo_values

RESERVATIONS = {
    "capacity": {"cores": 8, "memory": "64Gi"},
    "reserve": {"cores": 0, "memory": "0"},
    "marginMinutes": 0,
    "warnMinutes": 1,
    "graceMinutes": 0,
    "tickSeconds": 1,
}
SIZES = {
    "small": {"displayName": "Small", "executors": 2},
    "tiny": {"displayName": "Tiny", "executors": 0, "driverMemory": "768Mi"},
    "large": {"displayName": "Large", "executors": 3, "executorCores": 2, "minTier": "power"},
}


def reservation_values(**reservations: object) -> dict:
    """The demo values with the test platform's capacity and sizes (default-filled)."""
    values = demo_values(reservations={**RESERVATIONS, **reservations})
    values["sizes"] = copy.deepcopy(SIZES)
    values = apply_defaults(values)
    problems = validate(values)
    assert not problems, problems
    return values

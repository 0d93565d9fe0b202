"""Kubernetes resource quantities ("500m", "1.5", "2Gi", "1e3") as exact Decimals.

One parser for the hub (tier sizes) and the testing cluster (requests, quotas)."""

from __future__ import annotations

import re
from decimal import Decimal

_PATTERN = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse(quantity: str | int | float) -> Decimal:
    """The value of a quantity; raises ValueError for anything Kubernetes would reject."""
    if isinstance(quantity, int | float):
        return Decimal(str(quantity))
    match = _PATTERN.match(str(quantity).strip())
    if not match:
        raise ValueError(f"quantities must match the regular expression {_PATTERN.pattern!r}")
    number, exponent, suffix = match.groups()
    value = Decimal(number)
    if exponent:
        value *= Decimal(10) ** int(exponent[1:])
    return value * _SUFFIX[suffix]


def parse_quantity(quantity: str | int) -> int:
    """Bytes (or units) in a Kubernetes quantity: ``parse_quantity("2Gi") == 2147483648``."""
    if isinstance(quantity, int):
        return quantity
    try:
        return int(parse(quantity))
    except ValueError:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}") from None


def spark_memory(quantity: str | int) -> str:
    """A quantity in Spark's notation, rounded down to whole MiB (at least 1m)."""
    return f"{max(1, parse_quantity(quantity) // 2**20)}m"


def format_cpu(value: Decimal) -> str:
    millis = int(value * 1000)
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_bytes(value: Decimal) -> str:
    n = int(value)
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIX[suffix])
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def format_for(resource: str, value: Decimal) -> str:
    """A quantity written the way kubectl shows it for that resource name."""
    if resource.endswith("cpu"):
        return format_cpu(value)
    if resource.endswith(("memory", "storage")):
        return format_bytes(value)
    return str(int(value))


def human_bytes(n: int) -> str:
    """Bytes for people: ``human_bytes(3 * 2**30 // 2) == "1.5 GiB"``."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIX[suffix])
        if abs(n) >= unit:
            return f"{n / unit:.1f}".removesuffix(".0") + f" {suffix}B"
    return f"{n} B"

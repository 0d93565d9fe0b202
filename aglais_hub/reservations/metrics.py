"""Prometheus metrics of the reservation service (served at ``metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

BOOKINGS = Gauge("aglais_bookings", "Bookings by state", ["state"], registry=REGISTRY)
BOOKED = Gauge(
    "aglais_capacity_booked",
    "Capacity held by active bookings now",
    ["resource"],
    registry=REGISTRY,
)
FREE = Gauge(
    "aglais_capacity_free",
    "Capacity left for unbooked servers now",
    ["resource"],
    registry=REGISTRY,
)
CAPACITY = Gauge("aglais_capacity", "The platform's capacity", ["resource"], registry=REGISTRY)
QUEUE_LENGTH = Gauge("aglais_queue_length", "Unbooked spawns waiting", registry=REGISTRY)
QUEUE_WAIT = Histogram(
    "aglais_queue_wait_seconds",
    "How long unbooked spawns waited before starting",
    buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
SPAWN_CHECK = Histogram(
    "aglais_spawn_check_seconds",
    "Latency of spawn-check answers",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    registry=REGISTRY,
)
DECISIONS = Counter(
    "aglais_spawn_checks", "Spawn-check answers", ["kind", "outcome"], registry=REGISTRY
)
REQUESTS = Counter(
    "aglais_booking_requests",
    "Booking changes by outcome (HTTP status)",
    ["action", "status"],
    registry=REGISTRY,
)


def set_resources(gauge: Gauge, millicores: int, memory: int) -> None:
    gauge.labels("cores").set(millicores / 1000)
    gauge.labels("memory_bytes").set(memory)

"""Prometheus metrics of the reservation service (served at ``metrics``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

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


class BenchmarkGauges:
    """The latest nightly benchmark run as gauges, from its summary (see benchmark.py);
    no samples at all before the first run, rather than zeros that look like one."""

    def __init__(self) -> None:
        self.summary: dict | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        summary = self.summary
        if summary is None:
            return
        last = GaugeMetricFamily(
            "aglais_benchmark_last_run_timestamp_seconds",
            "When the latest nightly benchmark run finished (Unix time)",
        )
        last.add_metric([], datetime.fromisoformat(summary["finished"]).timestamp())
        status = GaugeMetricFamily(
            "aglais_benchmark_exit_status",
            "Exit status of the latest benchmark run: 0 passed, 1 failed, 2 did not run",
        )
        status.add_metric([], summary["exit_status"])
        results = GaugeMetricFamily(
            "aglais_benchmark_results",
            "Notebook runs of the latest benchmark run by verdict",
            labels=["verdict"],
        )
        for verdict, count in summary["counts"].items():
            results.add_metric([verdict], count)
        seconds = GaugeMetricFamily(
            "aglais_benchmark_notebook_seconds",
            "Wall time of each notebook for each user in the latest benchmark run",
            labels=["notebook", "user", "verdict"],
        )
        for row in summary["results"]:
            if row["seconds"] is not None:
                seconds.add_metric([row["notebook"], row["user"], row["verdict"]], row["seconds"])
        yield from (last, status, results, seconds)


BENCHMARK = BenchmarkGauges()
REGISTRY.register(BENCHMARK)

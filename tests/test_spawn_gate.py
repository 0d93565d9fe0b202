"""The spawn gate's edges, with a real hub, the real service and LocalSparkSpawner
(JupyterHub's dummy login stands in for the identity provider here): a queued spawn
that gives up, and a service that does not answer.

The harness's hub answers a start at once with 202 (``slow_spawn_timeout`` 0) and the
outcome comes through the spawn's progress events, which is what the spawn page shows.
What a REST client sees from a hub that waits for the spawn, as production's does
(the failure's status code and message), comes from `waiting_hub`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from aglais_hub.reservations.gate import ABANDONED_AFTER
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import free_port
from aglais_hub.testing.rawapi import wait_for
from aglais_hub.testing.reservations import ReservationHub
from tests.reservation_values import reservation_values

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# What users read, word for word (spawners/base.py). The spawn page shows a failure as
# the hub's progress stream words it: "Spawn failed: " and our message, nothing else
# (`spawn_failed`).
BOOKED_AWAY = (
    "The reservation service is not answering, so booked servers cannot start "
    "right now. Try again in a minute; tell an administrator if it persists."
)
REFUSED_AWAY = (
    "The reservation service is not answering, so no server can start right "
    "now. Try again in a minute."
)
SMALLEST_AWAY = (
    "The reservation service is not answering: starting with the smallest size while it is away."
)
QUEUED_FIRST = (
    "The shared cluster is full: position 1 in queue. Your server starts as "
    "soon as capacity frees up."
)
GAVE_UP = (
    "The shared cluster stayed full for 0.1 minutes, so this start gave up. Try "
    "again later, or book a cluster on the reservations page."
)
CAPACITY_FREE = "Shared capacity is available."
LAUNCHED = "Starting JupyterLab with Spark"


def spawn_failed(message: str) -> str:
    """A failed spawn's last progress event message: the hub's words, then ours only
    (no status, exception class or reason label)."""
    return f"Spawn failed: {message}"


def progress(hub: ReservationHub, user: str, server: str, timeout: float = 120) -> list[dict]:
    """The spawn's progress events up to ready or failed (with the harness's admin token)."""
    client = HubClient(hub.url)
    client.session = hub.api
    return client.follow_progress(user, server, timeout)["events"]


def spawn(
    hub: ReservationHub,
    user: str,
    server: str,
    options: object = None,
    session: requests.Session | None = None,
    timeout: float = 120,
) -> dict:
    """POST a start of ``user``'s ``server`` to the hub's REST API (``options`` as the
    body: the hub takes it as user_options) with ``session`` (default: the harness's
    admin token); the last progress event (``ready`` or ``failed`` with a
    ``message``), or ``{"failed", "status", "message"}`` when the hub answered an error.

    It takes either outcome (other test modules use it that way); this module's tests
    use `start`, which pins the hub's answer."""
    response = (session or hub.api).post(
        f"{hub.url}/hub/api/users/{user}/servers/{server}", json=options or {}, timeout=60
    )
    if response.status_code >= 400:  # the hub answers at once when the spawn fails fast
        return {
            "failed": True,
            "status": response.status_code,
            "message": response.json()["message"],
        }
    return progress(hub, user, server, timeout)[-1]


def post_start(hub: ReservationHub, user: str, server: str) -> requests.Response:
    return hub.api.post(f"{hub.url}/hub/api/users/{user}/servers/{server}", json={}, timeout=60)


def start(hub: ReservationHub, user: str, server: str, timeout: float = 120) -> list[dict]:
    """POST a start and follow it: the harness's hub must answer 202 (the spawner's start
    runs on, whatever its outcome); the spawn's progress events, never empty."""
    response = post_start(hub, user, server)
    assert response.status_code == 202, (response.status_code, response.text)
    events = progress(hub, user, server, timeout)
    assert events, f"no progress events for {user}/{server}"
    return events


def messages(events: list[dict]) -> list[str]:
    assert events
    return [e.get("message", "") for e in events]


def servers_of(hub: ReservationHub, user: str) -> dict:
    response = hub.api.get(f"{hub.url}/hub/api/users/{user}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["servers"]


def spark_conf(workdir: Path, user: str, server: str) -> Path:
    return workdir / "data" / "spark-conf" / user / server / "spark-defaults.conf"


def away_values(policy: str) -> dict:
    """The service "runs" at a free port where nothing listens: every spawn-check gets
    no connection (unreachable, not an error answer)."""
    return reservation_values(url=f"http://127.0.0.1:{free_port()}", whenUnreachable=policy)


def waiting_hub(workdir: Path, values: dict) -> ReservationHub:
    """A hub whose REST API waits for the spawn before it answers (as production's,
    whose slow_spawn_timeout is not 0): a start that fails answers its status and
    message, one that succeeds answers 201 once the server is up. The line comes after
    the harness's own (which sets 0), so it wins."""
    hub = ReservationHub(workdir, values)
    with hub.config.open("a") as config:
        config.write('\nc.JupyterHub.tornado_settings = {"slow_spawn_timeout": 120}\n')
    return hub


# -- the service does not answer -----------------------------------------------------------


@pytest.fixture(scope="module")
def smallest_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReservationHub, Path]]:
    """Unreachable service, the default policy (allow-smallest), the harness's hub."""
    workdir = tmp_path_factory.mktemp("gate-away-smallest")
    values = away_values("allow-smallest")
    assert values["reservations"]["whenUnreachable"] == "allow-smallest"
    with ReservationHub(workdir, values) as hub:
        yield hub, workdir


def test_a_booked_start_is_refused_when_the_service_does_not_answer(smallest_hub) -> None:
    """r1 is a booking's server name: nobody can tell whether the booking is active, so
    it is refused (never the smallest-size fallback) and nothing is launched."""
    hub, workdir = smallest_hub
    hub.add_user("alice", ["users"])
    events = start(hub, "alice", "r1")
    assert events[-1].get("failed") is True, events
    assert events[-1]["message"] == spawn_failed(BOOKED_AWAY), events
    assert not [m for m in messages(events) if "smallest size" in m or LAUNCHED in m], events
    assert not spark_conf(workdir, "alice", "r1").parent.exists()
    assert servers_of(hub, "alice") == {}


def test_an_unbooked_start_gets_the_smallest_size_when_the_service_does_not_answer(
    smallest_hub,
) -> None:
    """No auth_state with the dummy login, so the spawner gives bob the default tier
    (basic: 1 executor, a 512 MiB driver); the smallest size it may use is `tiny` (no
    executors, a 768 MiB driver), and that is what starts: not the tier's own size."""
    hub, workdir = smallest_hub
    hub.add_user("bob", ["users"])
    try:
        events = start(hub, "bob", "work")
        assert events[-1].get("ready") is True, events
        said = messages(events)
        assert SMALLEST_AWAY in said, events
        launch = [m for m in said if m.startswith(LAUNCHED)]
        assert launch == [f"{LAUNCHED} local[1] and 768m driver memory (tier Basic)"], events
        assert said.index(SMALLEST_AWAY) < said.index(launch[0]), events
        conf = spark_conf(workdir, "bob", "work").read_text()
        assert "spark.master local[1]\n" in conf and "spark.driver.memory 768m\n" in conf
        work = servers_of(hub, "bob")["work"]
        assert work["ready"] is True
        # the hub's server model says what this start really got
        assert work["user_options"]["applied"] == {
            "booking": None,
            "fallback": "smallest",
            "executors": 0,
            "executor_cores": 1,
            "executor_memory": 2**30,
            "driver_cores": 1,
            "driver_memory": 768 * 2**20,
        }
    finally:
        hub.api.delete(f"{hub.url}/hub/api/users/bob/servers/work", timeout=60)


def test_policy_allow_starts_the_tiers_own_size_when_the_service_does_not_answer(
    tmp_path,
) -> None:
    """whenUnreachable: allow, the same user and tier as the smallest-size test: the
    tier's own size starts (512 MiB driver), with no fallback message."""
    with ReservationHub(tmp_path, away_values("allow")) as hub:
        hub.add_user("carol", ["users"])
        events = start(hub, "carol", "work")
        assert events[-1].get("ready") is True, events
        said = messages(events)
        assert not [m for m in said if "smallest size" in m], events
        launch = [m for m in said if m.startswith(LAUNCHED)]
        assert launch == [f"{LAUNCHED} local[1] and 512m driver memory (tier Basic)"], events
        conf = spark_conf(tmp_path, "carol", "work").read_text()
        assert "spark.master local[1]\n" in conf and "spark.driver.memory 512m\n" in conf
        hub.api.delete(f"{hub.url}/hub/api/users/carol/servers/work", timeout=60)


def test_a_rest_client_is_refused_with_503_when_the_service_does_not_answer(tmp_path) -> None:
    """A hub that waits for the spawn answers the refusal itself: 503 and the message.
    With whenUnreachable: refuse, an unbooked start is refused too, and a booked one
    still gets the booked message (booked servers are refused whatever the policy)."""
    with waiting_hub(tmp_path, away_values("refuse")) as hub:
        hub.add_user("dave", ["users"])
        for server, message in (("r1", BOOKED_AWAY), ("work", REFUSED_AWAY)):
            response = post_start(hub, "dave", server)
            assert response.status_code == 503, (server, response.status_code, response.text)
            assert response.json()["message"] == message, (server, response.text)
            assert not spark_conf(tmp_path, "dave", server).parent.exists()
        assert servers_of(hub, "dave") == {}


# -- the queue -----------------------------------------------------------------------------


def queue_length(hub: ReservationHub) -> float:
    metrics = requests.get(hub.service_url + "metrics", timeout=10)
    assert metrics.status_code == 200, metrics.text
    found = re.search(r"^aglais_queue_length (\S+)$", metrics.text, re.M)
    assert found, metrics.text
    return float(found.group(1))


def test_a_queued_spawn_gives_up_after_the_queue_timeout(tmp_path) -> None:
    """Room for one server of the default tier (basic: 2 of 3 cores; the dummy login
    leaves no auth_state, so the spawner tells the gate 'basic'); the second waits 6 s,
    then gives up and leaves the queue."""
    values = reservation_values(capacity={"cores": 3, "memory": "64Gi"}, queueTimeoutMinutes=0.1)
    with ReservationHub(tmp_path, values) as hub:
        for name in ("ann", "ben"):
            hub.add_user(name, ["users"])
        try:
            first = start(hub, "ann", "work")
            assert first[-1].get("ready") is True, first
            assert CAPACITY_FREE in messages(first), first
            assert not [m for m in messages(first) if "queue" in m], first

            began = time.monotonic()
            response = post_start(hub, "ben", "work")
            assert response.status_code == 202, (response.status_code, response.text)
            deadline = time.monotonic() + 4  # well inside the 6 s ben may wait
            while queue_length(hub) != 1.0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert queue_length(hub) == 1.0, "ben never joined the queue"
            events = progress(hub, "ben", "work")
            ended = time.monotonic()
            assert events, "no progress events for ben"
            said = messages(events)
            assert QUEUED_FIRST in said, events
            assert not [m for m in said if m == CAPACITY_FREE or m.startswith(LAUNCHED)], events
            assert events[-1].get("failed") is True, events
            assert events[-1]["message"] == spawn_failed(GAVE_UP), events
            assert 6 <= ended - began < 60, ended - began
            # it left the queue by withdrawing: too soon for the service to have
            # forgotten it as abandoned
            assert queue_length(hub) == 0.0
            assert time.monotonic() - ended < ABANDONED_AFTER
            assert servers_of(hub, "ben") == {}
            assert servers_of(hub, "ann")["work"]["ready"] is True
            assert not spark_conf(tmp_path, "ben", "work").parent.exists()
        finally:
            hub.api.delete(f"{hub.url}/hub/api/users/ann/servers/work", timeout=60)


def test_a_spawn_queued_for_longer_than_the_start_timeout_still_starts(tmp_path) -> None:
    """ben waits in the queue past spawner.startTimeout (10 s): the queue's own timeout
    (a minute) bounds the wait, not the start's, and ben starts once ann stops."""
    values = reservation_values(capacity={"cores": 3, "memory": "64Gi"}, queueTimeoutMinutes=1)
    values["spawner"]["startTimeout"] = 10
    with ReservationHub(tmp_path, values) as hub:
        for name in ("ann", "ben"):
            hub.add_user(name, ["users"])
        try:
            assert start(hub, "ann", "work")[-1].get("ready") is True
            began = time.monotonic()
            assert post_start(hub, "ben", "work").status_code == 202
            wait_for(lambda: queue_length(hub) == 1.0, timeout=8, what="ben to join the queue")
            time.sleep(max(0.0, began + 14 - time.monotonic()))  # past the 10 s start timeout
            assert queue_length(hub) == 1.0, "ben left the queue before the queue timeout"
            hub.api.delete(f"{hub.url}/hub/api/users/ann/servers/work", timeout=60)
            events = progress(hub, "ben", "work")
            said = messages(events)
            assert events[-1].get("ready") is True, events
            assert QUEUED_FIRST in said and CAPACITY_FREE in said, events
            assert time.monotonic() - began > 14
        finally:
            for name in ("ann", "ben"):
                hub.api.delete(f"{hub.url}/hub/api/users/{name}/servers/work", timeout=60)


# -- the idle culler -----------------------------------------------------------------------


def hub_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_idle_culler_spares_a_server_whose_booking_runs(tmp_path) -> None:
    """jupyterhub-idle-culler (60 s timeout, the schema's minimum) stops bob's idle
    server; alice's booked server, started first and just as idle, lives on: the
    reservation service reports activity for it while the booking runs."""
    values = reservation_values()
    values["culler"] = {"enabled": True, "timeout": 60, "every": 10}
    with ReservationHub(tmp_path, values) as hub:
        token = hub.add_user("alice", ["users"])
        hub.add_user("bob", ["users"])
        now = datetime.now(UTC).replace(microsecond=0)
        created = hub.client(token).post(
            hub.service_url + "api/reservations",
            json={
                "size": "tiny",
                "start": now.isoformat(),
                "title": "long job",
                "end": (now + timedelta(minutes=30)).isoformat(),
            },
            timeout=30,
        )
        assert created.status_code == 201, created.text
        booking = created.json()
        server = booking["server_name"]
        assert server == f"r{booking['id']}", booking
        users = f"{hub.url}/hub/api/users/"
        assert start(hub, "alice", server)[-1].get("ready") is True
        assert start(hub, "bob", "idle")[-1].get("ready") is True
        # bob's activity as the hub has it now; anything later only moves it on
        idle_since = hub_time(servers_of(hub, "bob")["idle"]["last_activity"])

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and servers_of(hub, "bob"):
            time.sleep(2)
        assert servers_of(hub, "bob") == {}, "the culler never came"
        # gone for idleness (the culler's 60 s), not because the server died early
        assert datetime.now(UTC) - idle_since >= timedelta(seconds=60)
        alive = servers_of(hub, "alice")
        assert list(alive) == [server], alive
        assert alive[server]["ready"] is True, alive
        last = hub_time(alive[server]["last_activity"])
        assert datetime.now(UTC) - last < timedelta(seconds=10)
        hub.api.delete(users + f"alice/servers/{server}", timeout=60)

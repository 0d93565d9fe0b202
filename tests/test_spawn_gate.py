"""The spawn gate's edges, with a real hub, the real service and LocalSparkSpawner
(JupyterHub's dummy login stands in for the identity provider here): a queued spawn
that gives up, and a service that does not answer."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import free_port
from aglais_hub.testing.reservations import ReservationHub
from tests.reservation_values import reservation_values

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def progress(hub: ReservationHub, user: str, server: str, timeout: float = 120) -> list[dict]:
    """The spawn's progress events up to ready or failed (with the harness's admin token)."""
    client = HubClient(hub.url)
    client.session = hub.api
    return client.follow_progress(user, server, timeout)["events"]


def spawn(hub: ReservationHub, user: str, server: str, options: object = None,
          session: requests.Session | None = None, timeout: float = 120) -> dict:  # fmt: skip
    """POST a start of ``user``'s ``server`` to the hub's REST API (``options`` as the
    body: the hub takes it as user_options) with ``session`` (default: the harness's
    admin token); the last progress event (``ready`` or ``failed`` with a
    ``message``), or ``{"failed", "status", "message"}`` when the hub answered an error."""
    response = (session or hub.api).post(f"{hub.url}/hub/api/users/{user}/servers/{server}",
                                         json=options or {}, timeout=60)  # fmt: skip
    if response.status_code >= 400:  # the hub answers at once when the spawn fails fast
        return {"failed": True, "status": response.status_code,
                "message": response.json()["message"]}  # fmt: skip
    return progress(hub, user, server, timeout)[-1]


def test_unbooked_start_with_the_smallest_size_and_booked_ones_are_refused(tmp_path) -> None:
    values = reservation_values(url=f"http://127.0.0.1:{free_port()}")
    with ReservationHub(tmp_path, values) as hub:
        # no auth_state with the dummy login, so the spawner gives alice the default tier
        # (basic: one server at a time); its smallest size is `tiny`
        hub.add_user("alice", ["users"])
        api = f"{hub.url}/hub/api/users/alice/servers/"

        failed = spawn(hub, "alice", "r1")
        assert failed.get("failed"), failed
        assert "booked servers cannot start right now" in failed["message"]
        assert hub.api.post(api + "work", json={}).status_code in (201, 202)
        events = progress(hub, "alice", "work")
        assert events[-1].get("ready"), events
        messages = " | ".join(e.get("message", "") for e in events)
        assert "not answering: starting with the smallest size" in messages
        # `tiny`: no executors, a 768 MiB driver
        conf = (
            tmp_path / "data" / "spark-conf" / "alice" / "work" / "spark-defaults.conf"
        ).read_text()
        assert "spark.master local[1]\n" in conf and "spark.driver.memory 768m\n" in conf

        hub.api.delete(api + "work")


def test_a_queued_spawn_gives_up_after_the_queue_timeout(tmp_path) -> None:
    """Room for one server of the default tier (basic: 2 of 3 cores; the dummy login
    leaves no auth_state, so the spawner tells the gate 'basic'); the second waits 6 s,
    then gives up."""
    values = reservation_values(capacity={"cores": 3, "memory": "64Gi"}, queueTimeoutMinutes=0.1)
    with ReservationHub(tmp_path, values) as hub:
        for name in ("ann", "ben"):
            hub.add_user(name, ["users"])
        assert hub.api.post(f"{hub.url}/hub/api/users/ann/servers/work", json={}).ok
        assert progress(hub, "ann", "work")[-1].get("ready")
        began = time.monotonic()
        assert hub.api.post(f"{hub.url}/hub/api/users/ben/servers/work", json={}).ok
        events = progress(hub, "ben", "work")
        assert any("position 1 in queue" in e.get("message", "") for e in events), events
        assert events[-1].get("failed"), events
        assert "stayed full for 0.1 minutes, so this start gave up" in events[-1]["message"]
        assert time.monotonic() - began >= 6
        # it left the queue: nobody is waiting any more
        metrics = requests.get(hub.service_url + "metrics", timeout=10).text
        assert re.search(r"^aglais_queue_length 0\.0$", metrics, re.M), metrics
        hub.api.delete(f"{hub.url}/hub/api/users/ann/servers/work")


def test_the_idle_culler_spares_a_server_whose_booking_runs(tmp_path) -> None:
    """jupyterhub-idle-culler (60 s timeout, the schema's minimum) stops bob's idle
    server; alice's booked server, just as idle, lives on: the reservation service
    reports activity for it while the booking runs."""
    values = reservation_values()
    values["culler"] = {"enabled": True, "timeout": 60, "every": 10}
    with ReservationHub(tmp_path, values) as hub:
        token = hub.add_user("alice", ["users"])
        hub.add_user("bob", ["users"])
        now = datetime.now(UTC).replace(microsecond=0)
        booking = hub.client(token).post(hub.service_url + "api/reservations", json={
            "size": "tiny", "start": now.isoformat(), "title": "long job",
            "end": (now + timedelta(minutes=30)).isoformat()}).json()  # fmt: skip
        server = booking["server_name"]
        users = f"{hub.url}/hub/api/users/"
        assert hub.api.post(users + f"alice/servers/{server}", json={}).ok
        assert progress(hub, "alice", server)[-1].get("ready")
        assert hub.api.post(users + "bob/servers/idle", json={}).ok
        assert progress(hub, "bob", "idle")[-1].get("ready")

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and hub.api.get(users + "bob").json()["servers"]:
            time.sleep(2)
        assert hub.api.get(users + "bob").json()["servers"] == {}, "the culler never came"
        alive = hub.api.get(users + "alice").json()["servers"]
        assert alive[server]["ready"], alive
        last = datetime.fromisoformat(alive[server]["last_activity"].replace("Z", "+00:00"))
        assert datetime.now(UTC) - last < timedelta(seconds=10)
        hub.api.delete(users + f"alice/servers/{server}")

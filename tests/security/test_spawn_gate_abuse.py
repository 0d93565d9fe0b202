"""Abuse of the spawn gate (issue 10, items 3, 4 and 7): a real hub, the real managed
reservation service and LocalSparkSpawner, as in tests/test_spawn_gate.py.

- Poisoned spawn options (``{"profile": ["x"]}``) and spawn-check bodies are refused
  with a message naming the field; they never make the service answer 500, which the
  hub once read as "unreachable" and let spawns past the queue.
- An error answer from the service refuses the spawn with the service's message; only
  a service that does not answer falls back to ``whenUnreachable``.
- A booking runs only as ``r<id>``: ``r07``, ``r٧``, ``"r7 "`` are refused.
- Servers' own tokens read their owner's notices and can neither book nor cancel.
- A booking title becomes a clean display name.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from jupyterhub.slugs import is_valid_display_name
from tornado import web

from aglais_hub.offering import tier_from_values
from aglais_hub.reservations.service import Service
from aglais_hub.reservations.settings import settings_from_values
from aglais_hub.testing.platform import free_port
from aglais_hub.testing.reservations import ReservationHub
from spawners.base import AglaisSpawnerMixin
from spawners.gate import GateAnswer, GateUnreachable, SpawnGateClient
from tests.reservation_values import reservation_values
from tests.test_spawn_gate import progress, spawn

pytestmark = pytest.mark.timeout(300)

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
LIMITS = {
    "executors": 0,
    "executor_cores": 1,
    "executor_memory": 2**30,
    "driver_cores": 1,
    "driver_memory": 768 * 2**20,
}


def platform_values() -> dict:
    """Room for one unbooked server: everyone gets the standard tier (3.1 cores with
    its auth proxy, two servers at a time) on a platform of 3.1 cores; a queued spawn
    gives up after 6 s."""
    values = reservation_values(capacity={"cores": 3.1, "memory": "64Gi"}, queueTimeoutMinutes=0.1)
    values["auth"]["defaultTier"] = "standard"  # the dummy login leaves no auth_state
    return values


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReservationHub]:
    with ReservationHub(tmp_path_factory.mktemp("spawn-gate-abuse"), platform_values()) as hub:
        yield hub


@pytest.fixture(scope="module")
def tokens(hub: ReservationHub) -> dict[str, str]:
    return {name: hub.add_user(name, ["users"]) for name in ("alice", "ann", "ben", "mallory")}


def check(hub: ReservationHub, body: dict) -> requests.Response:
    """POST api/spawn-check as the hub's spawners do."""
    return hub.gate().post(hub.service_url + "api/spawn-check", json=body, timeout=30)


def servers_of(hub: ReservationHub, user: str) -> dict:
    return hub.api.get(f"{hub.url}/hub/api/users/{user}", timeout=30).json()["servers"]


# -- item 3: poisoned spawn options and spawn-check bodies ---------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"profile": ["x"]}, "profile"),
        ({"profile": {"a": 1}}, "profile"),
        ({"profile": "no-such-size"}, "profile"),
        ({"tier": ["standard"]}, "tier"),
        ({"tier": {"name": "power"}}, "tier"),
        ({"user": 7}, "user"),
        ({"user": ["ann"]}, "user"),
        ({"user": "a" * 300}, "user"),
        ({"server_name": 7}, "server_name"),
        ({"server_name": "r" * 300}, "server_name"),
        ({"withdraw": "yes"}, "withdraw"),
        ({"withdraw": 1}, "withdraw"),
        ({"evil": True}, "evil"),
    ],
)
def test_spawn_check_refuses_malformed_fields_with_422(
    hub: ReservationHub, changes: dict, field: str
) -> None:
    response = check(hub, {"user": "ann", "server_name": "work", "profile": None, **changes})
    assert response.status_code == 422, response.text
    named = "Unknown field(s): evil" if field == "evil" else f"'{field}'"
    assert named in response.json()["message"], response.json()


def test_the_service_counts_a_poisoned_profile_of_a_running_server_as_the_tiers_size() -> None:
    """The hub's server list carries user_options as users sent them: a list where a
    size's name belongs must not break every later spawn-check."""
    values = platform_values()
    service = Service(SimpleNamespace(settings=settings_from_values(values)), None)
    tier_size = service.need_of(None, "standard")
    for poison in (["x"], {"a": 1}, 7, True):
        assert service.need_of(poison, "standard") == tier_size


def test_a_poisoned_profile_is_refused_and_the_queue_still_holds(
    hub: ReservationHub, tokens: dict
) -> None:
    """The platform is full (ann); mallory POSTs a list as her profile to the hub's REST
    API. Her spawn is refused, saying why; ben, after her, still waits in the queue
    (before, her spawn made spawn-check answer 500, the hub read that as "unreachable"
    and started both of them at the smallest size)."""
    try:
        assert spawn(hub, "ann", "work").get("ready")
        mallory = hub.client(tokens["mallory"])
        refusals = [
            spawn(hub, "mallory", name, options, session=mallory)
            for name, options in (
                ("work", {"profile": ["x"]}),
                ("other", {"profile": {"slug": "large"}}),
            )
        ]

        assert hub.api.post(f"{hub.url}/hub/api/users/ben/servers/work", json={}).ok
        events = progress(hub, "ben", "work")
        assert any("position 1 in queue" in e.get("message", "") for e in events), events
        assert events[-1].get("failed") and "stayed full" in events[-1]["message"], events

        for refused in refusals:
            assert refused.get("failed"), refused
            assert "The spawn option 'profile' must be the name of a size" in refused["message"]
        assert servers_of(hub, "mallory") == {}
    finally:
        for user, server in (
            ("ann", "work"),
            ("ben", "work"),
            ("mallory", "work"),
            ("mallory", "other"),
        ):
            hub.api.delete(f"{hub.url}/hub/api/users/{user}/servers/{server}")


def test_an_error_answer_from_the_service_refuses_the_spawn(tmp_path: Path) -> None:
    """A spawner holding a token the service rejects gets a 401/403: that refuses the spawn
    with the service's message; it is not "unreachable" (no start at the smallest size)."""
    values = platform_values()
    values["hub"]["config"] = {"LocalSparkSpawner": {"reservations_token": "not-the-gate's"}}
    with ReservationHub(tmp_path, values) as hub:
        hub.add_user("ann", ["users"])
        refused = spawn(hub, "ann", "work")
        assert refused.get("failed"), refused
        assert re.search(
            r"The reservation service refused this start \(HTTP 40[13]\)", refused["message"]
        ), refused
        assert "Authorization: token" in refused["message"]  # the service's own words
        assert "smallest size" not in refused["message"]
        assert servers_of(hub, "ann") == {}


def run_async(coro: Coroutine) -> object:
    """Run ``coro`` on a loop of its own in a worker thread (a session's sync Playwright
    browser may own this thread's event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Answers(web.RequestHandler):
    """A stand-in service: /<status>/api/spawn-check answers with that status."""

    async def post(self, status: str) -> None:
        if status == "slow":
            await asyncio.sleep(1)
        elif status == "html":
            self.finish("<html>a login page</html>")
        else:
            self.set_status(int(status))
            self.finish({"status": int(status), "message": f"policy says no ({status})"})


async def gate_error(status: str) -> Exception | None:
    """What `SpawnGateClient.check` raises when the service answers ``status`` (or, for
    ``closed``, nothing listens)."""
    port = free_port()
    server = web.Application([(r"/(\w+)/api/spawn-check", Answers)]).listen(port, "127.0.0.1")
    where = f"{free_port()}/" if status == "closed" else f"{port}/{status}/"
    url = f"http://127.0.0.1:{where}"
    try:
        await SpawnGateClient(url, "token", request_timeout=0.5).check("ann", "work", None)
    except Exception as error:
        return error
    finally:
        server.stop()
    return None


@pytest.mark.parametrize("status", ["400", "403", "404", "422", "500", "html"])
def test_the_gate_client_reads_error_answers_as_refusals(status: str) -> None:
    error = run_async(gate_error(status))
    assert error is not None and not isinstance(error, GateUnreachable), error
    if status.isdigit():
        assert f"HTTP {status}" in str(error) and f"policy says no ({status})" in str(error)


@pytest.mark.parametrize("status", ["502", "503", "504", "slow", "closed"])
def test_only_no_answer_is_unreachable(status: str) -> None:
    assert isinstance(run_async(gate_error(status)), GateUnreachable)


# -- item 4: one booking, one server -------------------------------------------------------


@pytest.fixture(scope="module")
def booking(hub: ReservationHub, tokens: dict) -> Iterator[dict]:
    """alice's booking of `tiny`, active now for 30 minutes (cancelled at the end)."""
    now = datetime.now(UTC).replace(microsecond=0)
    booked = hub.client(tokens["alice"]).post(
        hub.service_url + "api/reservations",
        json={
            "size": "tiny",
            "start": now.isoformat(),
            "title": "alias test",
            "end": (now + timedelta(minutes=30)).isoformat(),
        },
        timeout=30,
    )
    assert booked.status_code == 201, booked.text
    yield booked.json()
    hub.client(tokens["alice"]).delete(hub.service_url + f"api/reservations/{booked.json()['id']}")
    for name in servers_of(hub, "alice"):
        hub.api.delete(f"{hub.url}/hub/api/users/alice/servers/{name}")


def aliases(number: int) -> list[str]:
    return [
        f"r0{number}",
        f"r00{number}",
        "r" + str(number).translate(ARABIC_INDIC),
        "r" + "".join(chr(0xFF10 + int(d)) for d in str(number)),  # full-width digits
        f"r{number} ",
        f"r {number}",
        f"R{number}",
    ]


def test_spawn_check_refuses_names_imitating_a_booking(hub: ReservationHub, booking: dict) -> None:
    number = booking["id"]
    for name in aliases(number):
        answer = check(hub, {"user": "alice", "server_name": name, "profile": None}).json()
        assert answer["allowed"] is False and answer["limits"] is None, (name, answer)
        assert f"belong to bookings and are written exactly r{number}" in answer["reason"]
    for name in ("r0", f"r{2**31}", "r" + "9" * 40):  # no booking can have these
        answer = check(hub, {"user": "alice", "server_name": name, "profile": None}).json()
        assert answer["allowed"] is False and "names no booking" in answer["reason"], answer
    answer = check(hub, {"user": "alice", "server_name": f"r{number}", "profile": None}).json()
    assert answer["allowed"] is True and answer["booking"] == number


def test_a_booking_runs_only_as_its_own_server(
    hub: ReservationHub, tokens: dict, booking: dict
) -> None:
    """r<id> starts at the booked size; r0<id> beside it (or any look-alike the hub lets
    through as a name) is refused, saying which name is the booking's."""
    number, alice = booking["id"], hub.client(tokens["alice"])
    assert spawn(hub, "alice", f"r{number}", session=alice).get("ready")
    for name in aliases(number):
        refused = spawn(hub, "alice", name, session=alice)
        assert refused.get("failed"), (name, refused)
        if refused.get("status") != 400 or "Invalid server_name" not in refused["message"]:
            assert f"written exactly r{number}" in refused["message"], refused
    running = servers_of(hub, "alice")
    assert list(running) == [f"r{number}"], running


# -- item 7a: what a server's own token may do at the service ------------------------------


def server_token(user: str, server: str) -> str:
    """The hub token a running LocalSparkSpawner server was given (its environment)."""
    wanted = {f"JUPYTERHUB_USER={user}".encode(), f"JUPYTERHUB_SERVER_NAME={server}".encode()}
    for proc in Path("/proc").iterdir():
        try:
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            for entry in environ:
                if entry.startswith(b"JUPYTERHUB_API_TOKEN="):
                    return entry.split(b"=", 1)[1].decode()
    raise LookupError(f"no process of {user}/{server}")


def test_a_servers_own_token_reads_notices_but_cannot_book_or_cancel(
    hub: ReservationHub, tokens: dict, booking: dict
) -> None:
    number = booking["id"]
    if f"r{number}" not in servers_of(hub, "alice"):
        assert spawn(hub, "alice", f"r{number}", session=hub.client(tokens["alice"])).get("ready")
    token = server_token("alice", f"r{number}")
    notebook = hub.client(token)  # what code in alice's notebook holds
    scopes = notebook.get(f"{hub.url}/hub/api/user", timeout=30).json()["scopes"]
    assert "custom:reservations:notices!user=alice" in scopes
    assert not [s for s in scopes if s.startswith("access:services")], scopes

    now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    create = notebook.post(
        hub.service_url + "api/reservations",
        timeout=30,
        json={
            "size": "tiny",
            "start": now.isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert create.status_code == 403, create.text
    assert notebook.delete(hub.service_url + f"api/reservations/{number}").status_code == 403
    assert notebook.get(hub.service_url + "api/reservations").status_code == 403
    assert notebook.get(hub.service_url + "api/sizes").status_code == 403

    found = notebook.get(hub.service_url + "api/notices", params={"server_name": f"r{number}"})
    assert found.status_code == 200, found.text
    assert isinstance(found.json()["notices"], list)
    # still booked and running: the token changed nothing
    assert (
        hub.client(tokens["alice"])
        .get(hub.service_url + f"api/reservations/{number}")
        .json()["state"]
        == "active"
    )


def test_after_cancelling_no_server_of_the_booking_runs(
    hub: ReservationHub, tokens: dict, booking: dict
) -> None:
    number, alice = booking["id"], hub.client(tokens["alice"])
    if f"r{number}" not in servers_of(hub, "alice"):
        assert spawn(hub, "alice", f"r{number}", session=alice).get("ready")
    cancelled = alice.delete(hub.service_url + f"api/reservations/{number}", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    deadline = time.monotonic() + 60
    while servers_of(hub, "alice") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers_of(hub, "alice") == {}
    refused = spawn(hub, "alice", f"r0{number}", session=alice)
    assert refused.get("failed") and f"written exactly r{number}" in refused["message"]


# -- item 7b: booking titles on the hub's home page ----------------------------------------


class GatedSpawner(AglaisSpawnerMixin):
    """Just the mixin's gate, for one booked spawn (no process, no hub)."""

    def __init__(self) -> None:
        super().__init__(reservations_url="http://127.0.0.1:1/services/reservations/")
        self.user = SimpleNamespace(name="alice")
        self.name = "r7"
        self.user_options = {}
        self.orm_spawner = SimpleNamespace(display_name="r7")
        self._log_name = "alice:r7"


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("Gaia\u202e 3pm\u202c run", "Gaia 3pm run"),  # RTL override
        ("\u2067evil\u2069 isolate", "evil isolate"),
        ("two\nlines\r\nand\ttabs", "two lines and tabs"),
        ("nul\x00byte", "nul byte"),
        ("  spaced   out  ", "spaced out"),
        ("x" * 400, "x" * 255),
    ],
)
def test_a_booking_title_becomes_a_clean_display_name(
    monkeypatch: pytest.MonkeyPatch, title: str, shown: str
) -> None:
    async def allowed(*args: object) -> GateAnswer:
        return GateAnswer(True, "Booking 7 is active.", LIMITS, None, 7, title)

    monkeypatch.setattr(SpawnGateClient, "check", allowed)
    spawner = GatedSpawner()
    values = platform_values()
    run_async(spawner.pass_gate(tier_from_values("standard", values["tiers"]["standard"])))
    assert spawner.orm_spawner.display_name == shown
    assert is_valid_display_name(shown)


def test_a_title_stored_before_the_rules_is_cleaned_in_notices_and_refusals() -> None:
    """Titles written before titles were checked still reach the notice bar and the
    spawn page: both show them cleaned."""
    from aglais_hub.reservations.gate import booked_decision
    from aglais_hub.reservations.models import Booking
    from aglais_hub.reservations.notices import notices

    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    booking = Booking(
        id=7,
        user="alice",
        title="evil\u202e\ngpj.exe\x00",
        state="active",
        start=now - timedelta(hours=1),
        end=now + timedelta(minutes=5),
    )
    [notice] = notices([booking], now, timedelta(minutes=10), timedelta(0))
    refusal = booked_decision("alice", "r7", booking, now + timedelta(hours=1))
    for text in (notice["message"], refusal.reason):
        assert "'evil gpj.exe'" in text, text
        assert not any(c in text for c in "\u202e\n\x00"), repr(text)

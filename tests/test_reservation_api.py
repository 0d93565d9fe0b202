"""The reservation API through a real hub and its real managed service, every endpoint and
error of the contract in DESIGN.md. Users log in with JupyterHub's dummy authenticator
(no identity provider here: the end-to-end tests use the real one); tokens are real
hub API tokens. Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests

from aglais_hub.reservations.app import make_app
from aglais_hub.testing.reservations import ReservationHub
from tests.conftest import fresh_postgres
from tests.reservation_values import reservation_values

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReservationHub]:
    workdir = tmp_path_factory.mktemp(f"reservations-{request.param}")
    values = reservation_values()
    # many bookings per user across these tests; the count and weekly limits have their
    # own tests (test_reservation_store.py), as does one here with its own user
    for tier in ("standard", "power"):
        values["tiers"][tier].update(activeBookings=1000, bookingHours=1000, bookingAheadDays=365)
    if request.param == "sqlite":
        with ReservationHub(workdir, values) as hub:
            yield hub
    else:
        with fresh_postgres() as url, ReservationHub(workdir, values, db_url=url) as hub:
            hub.db_url = url
            yield hub


@pytest.fixture(scope="module")
def tokens(hub: ReservationHub) -> dict[str, str]:
    return {
        "alice": hub.add_user("alice", ["users"]),  # standard tier
        "bob": hub.add_user("bob", ["users", "power"]),  # power tier
        "admin": hub.add_user("admin", ["admins"], admin=True),
        "carol": hub.add_user("carol", []),  # basic tier: no bookings
    }


def iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# every test books in its own far-apart window, so the module's tests do not collide
_window = iter(range(1, 200))


def slot() -> datetime:
    """The start of a fresh 10-hour window, a few hours to days ahead."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return base + timedelta(hours=2 + 10 * next(_window))


class Api:
    def __init__(self, hub: ReservationHub, token: str):
        self.base = hub.service_url + "api/"
        self.session = hub.client(token)

    def __getattr__(self, method: str):  # get, post, patch, delete
        call = getattr(self.session, method)
        return lambda path, **kw: call(self.base + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def alice(hub, tokens) -> Api:
    return Api(hub, tokens["alice"])


@pytest.fixture(scope="module")
def bob(hub, tokens) -> Api:
    return Api(hub, tokens["bob"])


@pytest.fixture(scope="module")
def admin(hub, tokens) -> Api:
    return Api(hub, tokens["admin"])


def book(
    api: Api,
    start: datetime,
    hours: float = 1,
    size: str = "small",
    headers: dict | None = None,
    **extra,
) -> requests.Response:
    return api.post(
        "reservations",
        headers=headers,
        json={
            "size": size,
            "start": iso(start),
            "end": iso(start + timedelta(hours=hours)),
            **extra,
        },
    )


def test_without_a_token_the_api_is_401_and_health_is_open(hub: ReservationHub) -> None:
    assert requests.get(hub.service_url + "api/health").status_code == 200
    for path in ("sizes", "reservations", "capacity", "reservations/1"):
        response = requests.get(hub.service_url + "api/" + path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("token")
        assert "token" in response.json()["message"]
    bad = requests.get(hub.service_url + "api/sizes", headers={"Authorization": "token nope"})
    assert bad.status_code == 401 and bad.json()["status"] == 401


def test_errors_are_json_on_every_api_route(hub: ReservationHub, alice: Api) -> None:
    missing = alice.get("no-such-route")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert missing.headers["Content-Type"] == "application/json"
    wrong = alice.put("reservations")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, POST"
    assert wrong.json() == {"status": 405, "message": "PUT is not allowed here; use GET, POST."}
    assert alice.post("sizes").headers["Allow"] == "GET"
    form = alice.post(
        "reservations",
        data="size=small",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415 and "application/json" in form.json()["message"]


def test_sizes_lists_resources_and_footprints(alice: Api) -> None:
    body = alice.get("sizes").json()
    sizes = {s["name"]: s for s in body["sizes"]}
    assert set(sizes) == {"small", "tiny", "large"}
    # driver, two executors and the auth proxy's tenth of a core
    assert sizes["small"]["executors"] == 2 and sizes["small"]["footprint"]["cores"] == 3.1
    assert sizes["large"]["min_tier"] == "power"
    assert body["capacity"] == {"cores": 8, "memory": 64 * 2**30}


def test_alice_books_reads_and_lists(alice: Api) -> None:
    start = slot()
    response = book(alice, start, 2, title="Gaia DR3 cross-match")
    assert response.status_code == 201, response.text
    booking = response.json()
    assert {k: booking[k] for k in ("user", "size", "state", "title")} == {
        "user": "alice",
        "size": "small",
        "state": "pending",
        "title": "Gaia DR3 cross-match",
    }
    assert booking["server_name"] == f"r{booking['id']}"
    assert booking["start"] == iso(start) and booking["end"] == iso(start + timedelta(hours=2))
    assert response.headers["Location"].endswith(f"/api/reservations/{booking['id']}")
    assert alice.get(f"reservations/{booking['id']}").json() == booking
    assert booking["id"] in [b["id"] for b in alice.get("reservations").json()["reservations"]]


def test_another_users_booking_is_404_everywhere(alice: Api, bob: Api) -> None:
    booking = book(alice, slot()).json()
    for response in (
        bob.get(f"reservations/{booking['id']}"),
        bob.patch(f"reservations/{booking['id']}", json={"end": booking["end"]}),
        bob.delete(f"reservations/{booking['id']}"),
        bob.get("reservations/999999"),
    ):
        assert response.status_code == 404
        assert response.json()["message"].startswith("You have no booking")
    assert booking["id"] not in [b["id"] for b in bob.get("reservations").json()["reservations"]]
    assert alice.get(f"reservations/{booking['id']}").json()["state"] == "pending"


@pytest.mark.parametrize(
    "body, words",
    [
        ({"size": "small", "start": "+2", "end": "+1"}, "must be after"),
        ({"size": "small", "start": "+1", "end": "+1"}, "must be after"),
        ({"size": "small", "start": "now-3", "end": "now-1"}, "in the past"),
        ({"size": "huge", "start": "+1", "end": "+2"}, "no size 'huge'"),
        ({"size": "small", "start": "+1", "end": "+10"}, "longer than your tier"),
        ({"size": "small", "start": "tomorrow", "end": "+2"}, "not an ISO 8601 time"),
        ({"size": "small", "start": "2030-01-01T10:00:00", "end": "+2"}, "needs a time zone"),
        ({"size": "small", "start": "+1"}, "'end' must be an ISO 8601 time"),
        ({"size": 3, "start": "+1", "end": "+2"}, "'size' must name"),
        (
            {"size": "small", "start": "+1", "end": "+2", "colour": "red"},
            "Unknown field(s): colour",
        ),
    ],
)
def test_malformed_or_impossible_bookings_are_422(alice: Api, body: dict, words: str) -> None:
    start = slot()
    now = datetime.now(UTC)
    for key, value in body.items():
        if isinstance(value, str) and value[:1] in "+-":
            body[key] = iso(start + timedelta(hours=int(value)))
        elif isinstance(value, str) and value.startswith("now"):
            body[key] = iso(now + timedelta(hours=int(value[3:])))
    response = alice.post("reservations", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]


def test_not_json_is_422(alice: Api) -> None:
    response = alice.post("reservations", data="size=small")
    assert response.status_code == 422 and "not JSON" in response.json()["message"]


def test_a_retry_with_the_same_idempotency_key_gets_the_same_booking(alice: Api, bob: Api) -> None:
    start, key = slot(), {"Idempotency-Key": "7d3b4c1e-retry"}
    first = book(alice, start, 1, title="once", headers=key)
    assert first.status_code == 201, first.text
    again = book(alice, start, 1, title="once", headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    other = book(alice, start, 2, title="once", headers=key)
    assert other.status_code == 422 and "already used for a different request" in other.text
    assert book(bob, start, 1, title="once", headers=key).status_code == 201  # bob's own key
    mine = [b for b in alice.get("reservations").json()["reservations"] if b["title"] == "once"]
    assert [b["id"] for b in mine] == [first.json()["id"]]


def test_what_the_tier_forbids_is_403(alice: Api, hub: ReservationHub, tokens: dict) -> None:
    response = book(alice, slot(), size="large")
    assert response.status_code == 403
    assert "needs tier 'Power'" in response.json()["message"]
    carol = Api(hub, tokens["carol"])
    response = book(carol, slot(), size="tiny")
    assert response.status_code == 403 and "cannot book" in response.json()["message"]
    response = book(alice, slot(), user="bob")
    assert response.status_code == 403 and "Only administrators" in response.json()["message"]


def test_over_capacity_is_409_naming_the_full_interval(alice: Api, bob: Api, admin: Api) -> None:
    start = slot()
    assert book(bob, start, 2).status_code == 201  # start .. +2
    assert book(admin, start + timedelta(hours=1), 2).status_code == 201  # +1 .. +3
    response = book(alice, start, 4)
    assert response.status_code == 409
    message = response.json()["message"]
    assert f"from {iso(start + timedelta(hours=1))} to {iso(start + timedelta(hours=2))}" in message
    assert "needs 3.1 cores" in message


def test_extend_rechecks_capacity_shorten_always_works(alice: Api, bob: Api, admin: Api) -> None:
    start = slot()
    mine = book(alice, start, 1).json()
    book(bob, start + timedelta(hours=1), 2)
    book(admin, start + timedelta(hours=1), 2)
    longer = alice.patch(
        f"reservations/{mine['id']}", json={"end": iso(start + timedelta(hours=2))}
    )
    assert longer.status_code == 409
    assert f"from {iso(start + timedelta(hours=1))}" in longer.json()["message"]
    shorter = alice.patch(
        f"reservations/{mine['id']}", json={"end": iso(start + timedelta(minutes=30))}
    )
    assert shorter.status_code == 200 and shorter.json()["end"] == iso(
        start + timedelta(minutes=30)
    )
    bad = alice.patch(f"reservations/{mine['id']}", json={"end": iso(start - timedelta(hours=1))})
    assert bad.status_code == 422
    assert alice.patch(f"reservations/{mine['id']}", json={"title": "x"}).status_code == 422


def test_cancel_frees_capacity_and_cannot_repeat(alice: Api, bob: Api, admin: Api) -> None:
    start = slot()
    first = book(bob, start, 1).json()
    book(admin, start, 1)
    assert book(alice, start, 1).status_code == 409
    cancelled = bob.delete(f"reservations/{first['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert bob.delete(f"reservations/{first['id']}").status_code == 409
    assert book(alice, start, 1).status_code == 201


def test_admins_see_everyone_and_book_on_behalf(alice: Api, admin: Api) -> None:
    mine = book(alice, slot()).json()
    everyone = admin.get("reservations").json()["reservations"]
    assert mine["id"] in [b["id"] for b in everyone]
    only_alice = admin.get("reservations", params={"user": "alice"}).json()["reservations"]
    assert {b["user"] for b in only_alice} == {"alice"}
    # on alice's behalf, past her tier's rules (large needs power)
    response = book(admin, slot(), size="large", user="alice")
    assert response.status_code == 201 and response.json()["user"] == "alice"
    assert response.json()["created_by"] == "admin"
    assert alice.get(f"reservations/{response.json()['id']}").status_code == 200
    assert book(admin, slot(), user="nobody").status_code == 422
    assert admin.get("reservations", params={"state": "bogus"}).status_code == 422


def test_capacity_counts_what_still_fits(alice: Api, bob: Api) -> None:
    start = slot()
    book(bob, start, 2)
    window = {"start": iso(start), "end": iso(start + timedelta(hours=4))}
    body = alice.get("capacity", params=window).json()
    assert body["sizes"]["small"]["bookable"] == 1  # 8 - 3.1 = 4.9 cores: one more small
    assert body["free"]["cores"] == 4.9
    pieces = [(p["start"], p["sizes"]["small"]) for p in body["timeline"]]
    assert pieces == [(iso(start), 1), (iso(start + timedelta(hours=2)), 2)]
    assert (
        alice.get("capacity", params={"start": window["end"], "end": window["start"]}).status_code
        == 422
    )


def test_spawn_check_is_for_the_hub_only(hub: ReservationHub, alice: Api) -> None:
    response = alice.post("spawn-check", json={"user": "alice", "server_name": ""})
    assert response.status_code == 403
    gate = hub.gate()
    answer = gate.post(
        hub.service_url + "api/spawn-check",
        json={"user": "alice", "server_name": "", "profile": "tiny"},
    ).json()
    assert answer["allowed"] is True and answer["limits"] is None
    assert (
        gate.post(hub.service_url + "api/spawn-check", json={"server_name": ""}).status_code == 422
    )


def test_spawn_check_for_booked_servers(
    hub: ReservationHub, alice: Api, bob: Api, admin: Api
) -> None:
    gate = hub.gate()

    def check(user: str, server: str) -> dict:
        return gate.post(
            hub.service_url + "api/spawn-check",
            json={"user": user, "server_name": server, "profile": None},
        ).json()

    later = book(alice, slot(), title="Later").json()
    answer = check("alice", later["server_name"])
    assert answer["allowed"] is False and "starts at " + later["start"] in answer["reason"]
    assert check("bob", later["server_name"])["allowed"] is False
    assert "no booking" in check("bob", later["server_name"])["reason"]
    now = datetime.now(UTC)
    current = book(admin, now, 1, size="large", user="bob").json()
    answer = check("bob", current["server_name"])
    assert answer["allowed"] is True and answer["booking"] == current["id"]
    assert answer["size"] == "large"  # the spawner runs the booked size's flavour
    assert answer["limits"] == {
        "executors": 3,
        "executor_cores": 2,
        "executor_memory": 2**30,
        "driver_cores": 1,
        "driver_memory": 2**30,
    }
    bob.delete(f"reservations/{current['id']}")
    assert "cancelled" in check("bob", current["server_name"])["reason"]


def test_notices_warn_the_owner_before_the_end(alice: Api, bob: Api) -> None:
    booking = book(alice, datetime.now(UTC), 50 / 3600, size="tiny", title="Short").json()
    found = alice.get("notices", params={"server_name": booking["server_name"]}).json()["notices"]
    assert [n["booking"] for n in found] == [booking["id"]]  # warnMinutes: 1
    assert found[0]["message"].startswith(f"Your booking 'Short' ends at {booking['end']}.")
    assert booking["id"] not in [n["booking"] for n in bob.get("notices").json()["notices"]]
    alice.delete(f"reservations/{booking['id']}")


def test_openapi_documents_every_route(hub: ReservationHub) -> None:
    spec = requests.get(hub.service_url + "api/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and spec["servers"] == [
        {"url": "/services/reservations/"}
    ]
    app = make_app(None, "/services/reservations/", b"x")
    routes = set()
    for rule in app.wildcard_router.rules:
        path = rule.matcher.regex.pattern.rstrip("$").removeprefix("/services/reservations")
        if path == "/api/.*":  # the JSON 404 for every other path under api/
            continue
        if path.startswith("/api") or path == "/metrics":
            routes.add(re.sub(r"\(\\d\+\)", "{id}", path))
    assert routes == set(spec["paths"])


def test_metrics_count_bookings_and_checks(hub: ReservationHub, alice: Api) -> None:
    book(alice, slot())
    text = requests.get(hub.service_url + "metrics").text
    pending = float(re.search(r'aglais_bookings\{state="pending"\} (\S+)', text).group(1))
    assert pending >= 1
    assert 'aglais_capacity{resource="cores"} 8.0' in text
    assert "aglais_spawn_check_seconds_bucket" in text and "aglais_queue_length" in text


def test_fifty_concurrent_creates_never_overcommit(hub: ReservationHub, tokens: dict) -> None:
    """50 creates at once for the same window: 2 smalls fit, the rest 409, no 5xx."""
    start = slot()
    api = Api(hub, tokens["admin"])
    users = [f"crowd{i}" for i in range(50)]

    def one(user: str) -> requests.Response:
        return book(api, start, 1, user="bob", title=user)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(one, users))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 2 and statuses.count(409) == 48, statuses
    accepted = {r.json()["id"] for r in responses if r.status_code == 201}
    listed = {
        b["id"]
        for b in api.get("reservations", params={"user": "bob"}).json()["reservations"]
        if b["start"] == iso(start) and b["state"] != "cancelled"
    }
    assert listed == accepted
    if getattr(hub, "db_url", None):  # the database itself agrees
        with psycopg.connect(hub.db_url) as conn:
            rows = conn.execute(
                "SELECT id FROM bookings WHERE start = %s AND state <> 'cancelled'",
                (start.replace(tzinfo=None),),
            ).fetchall()
        assert {r[0] for r in rows} == accepted


def test_the_service_restarts_without_losing_bookings(hub: ReservationHub, alice: Api) -> None:
    booking = book(alice, slot()).json()
    old = hub.service_pid()
    hub.kill_service()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if hub.service_pid() != old:
                break
        except LookupError:
            pass
        time.sleep(0.5)
    hub.wait_for_service()
    assert hub.service_pid() != old, "the service was never restarted"
    assert alice.get(f"reservations/{booking['id']}").json() == booking

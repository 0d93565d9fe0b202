"""Hostile input to the reservation API, each case of issue 10's item 5 (and 7) by name.

Through a real hub and its real managed service, on SQLite and on PostgreSQL. Every
answer must be the documented 4xx with the JSON error body ``{"status", "message"}``
naming the problem, and nothing may reach the database (no booking appears).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from aglais_hub.testing.reservations import ReservationHub
from tests.conftest import fresh_postgres
from tests.reservation_values import reservation_values

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    workdir = tmp_path_factory.mktemp(f"inputs-{request.param}")
    values = reservation_values()
    values["tiers"]["standard"].update(activeBookings=100, bookingHours=1000, bookingAheadDays=365)
    if request.param == "sqlite":
        with ReservationHub(workdir, values) as hub:
            yield hub
    else:
        with fresh_postgres() as url, ReservationHub(workdir, values, db_url=url) as hub:
            yield hub


@pytest.fixture(scope="module")
def alice(hub: ReservationHub) -> requests.Session:
    return hub.client(hub.add_user("alice", ["users"]))


@pytest.fixture(scope="module")
def admin(hub: ReservationHub) -> requests.Session:
    return hub.client(hub.add_user("admin", ["admins"], admin=True))


def iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)


def booking(hours: float = 1, **extra: object) -> dict:
    return {
        "size": "tiny",
        "start": iso(START),
        "end": iso(START + timedelta(hours=hours)),
        **extra,
    }


def refused(response: requests.Response, status: int, words: str) -> None:
    """The documented error: that status, JSON, ``{"status", "message"}`` naming it."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and isinstance(body["message"], str), body
    assert words in body["message"], body["message"]


def count(hub: ReservationHub, session: requests.Session) -> int:
    return len(session.get(hub.service_url + "api/reservations").json()["reservations"])


def post_raw(hub: ReservationHub, session: requests.Session, raw: bytes) -> requests.Response:
    return session.post(
        hub.service_url + "api/reservations",
        data=raw,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )


def test_a_lone_surrogate_title_is_422(hub: ReservationHub, alice: requests.Session) -> None:
    before = count(hub, alice)
    raw = json.dumps(booking(title="Gaia \ud800")).encode()  # JSON's escape: "\ud800"
    assert b"\\ud800" in raw
    refused(post_raw(hub, alice, raw), 422, "lone surrogate")
    raw_bytes = raw.replace(b"\\ud800", b"\xed\xa0\x80")  # a surrogate encoded as "UTF-8"
    refused(post_raw(hub, alice, raw_bytes), 422, "not UTF-8")
    assert count(hub, alice) == before


def test_a_nul_in_a_title_is_422_and_never_reaches_the_database(
    hub: ReservationHub, alice: requests.Session
) -> None:
    before = count(hub, alice)
    response = alice.post(hub.service_url + "api/reservations", json=booking(title="a\x00b"))
    refused(response, 422, "NUL")
    assert count(hub, alice) == before


@pytest.mark.parametrize(
    "title, words",
    [
        ("\u202eexe.txt", "bidirectional control character (U+202E)"),
        ("isolate \u2066x\u2069", "bidirectional control character (U+2066)"),
        ("two\nlines", "control character (U+000A)"),
        ("tab\there", "control character (U+0009)"),
        ("line\u2028separator", "line break (U+2028)"),
        ("x" * 201, "longer than 200 characters"),
    ],
)
def test_titles_are_checked_like_display_names(
    hub: ReservationHub, alice: requests.Session, title: str, words: str
) -> None:
    response = alice.post(hub.service_url + "api/reservations", json=booking(title=title))
    refused(response, 422, words)


def test_a_title_is_stored_trimmed_as_one_line(
    hub: ReservationHub, alice: requests.Session
) -> None:
    later = START + timedelta(days=1)
    body = {
        "size": "tiny",
        "start": iso(later),
        "end": iso(later + timedelta(hours=1)),
        "title": "  Gaia   DR3\u200b workshop  ",
    }
    response = alice.post(hub.service_url + "api/reservations", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Gaia DR3 workshop"
    assert alice.delete(hub.url + response.headers["Location"]).status_code == 200


def test_a_body_that_is_not_utf8_is_422(hub: ReservationHub, alice: requests.Session) -> None:
    refused(post_raw(hub, alice, b'{"size": "sm\xffall"}'), 422, "not UTF-8")
    refused(post_raw(hub, alice, b"\xfe\xff\x00{"), 422, "not UTF-8")


def test_json_nested_100k_deep_is_refused(hub: ReservationHub, alice: requests.Session) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # 200 kB: over the body limit
    refused(post_raw(hub, alice, deep), 413, "larger than 65536 bytes")
    deep = b'{"title":' + b"[" * 10_000 + b"]" * 10_000 + b"}"  # 20 kB: under it, too deep
    refused(post_raw(hub, alice, deep), 422, "deeper than 32 levels")
    refused(post_raw(hub, alice, b'{"a":' * 33 + b"1" + b"}" * 33), 422, "deeper than 32")


def test_other_bodies_that_are_not_json_are_422(
    hub: ReservationHub, alice: requests.Session
) -> None:
    refused(post_raw(hub, alice, b'{"size": NaN}'), 422, "not JSON")
    refused(post_raw(hub, alice, b'{"size": ' + b"9" * 5000 + b"}"), 422, "not JSON")
    refused(post_raw(hub, alice, b"[1]"), 422, "must be a JSON object")
    big = json.dumps(booking(title="x" * 70_000)).encode()
    refused(post_raw(hub, alice, big), 413, "larger than")


@pytest.mark.parametrize("number", [0, 2**31, 2**63, 10**30])
def test_ids_beyond_the_database_integer_are_404(
    hub: ReservationHub, alice: requests.Session, number: int
) -> None:
    url = hub.service_url + f"api/reservations/{number}"
    refused(alice.get(url), 404, "You have no booking")
    refused(alice.patch(url, json={"end": iso(START)}), 404, "You have no booking")
    refused(alice.delete(url), 404, "You have no booking")
    refused(alice.get(hub.service_url + "api/reservations/-1"), 404, "no such API route")


@pytest.mark.parametrize(
    "start, end",
    [
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31T23:59:59Z", None),
        ("2026-12-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
    ],
)
def test_capacity_near_year_1_or_9999_is_422(
    hub: ReservationHub, alice: requests.Session, start: str, end: str | None
) -> None:
    params = {"start": start, **({"end": end} if end else {})}
    response = alice.get(hub.service_url + "api/capacity", params=params)
    refused(response, 422, "must fall in the years 2000 to 2100")


def test_bookings_near_year_9999_are_422(hub: ReservationHub, admin: requests.Session) -> None:
    body = {"size": "tiny", "start": "9999-12-31T00:00:00Z", "end": "9999-12-31T23:59:59Z"}
    refused(admin.post(hub.service_url + "api/reservations", json=body), 422, "years 2000 to 2100")


@pytest.mark.parametrize("user", [5, None, "", ["alice"], {"name": "alice"}, "a\x00b"])
def test_admins_name_the_user_as_a_string(
    hub: ReservationHub, admin: requests.Session, user: object
) -> None:
    response = admin.post(hub.service_url + "api/reservations", json=booking(user=user))
    refused(response, 422, "'user'")


def test_reservations_filter_by_user_is_checked(
    hub: ReservationHub, admin: requests.Session
) -> None:
    response = admin.get(hub.service_url + "api/reservations", params={"user": "x" * 300})
    refused(response, 422, "longer than 255")


def test_ten_thousand_hours_is_422_for_admins_too(
    hub: ReservationHub, alice: requests.Session, admin: requests.Session
) -> None:
    url = hub.service_url + "api/reservations"
    for body in (booking(10_000, user="alice"), booking(10_000), booking(745, user="alice")):
        refused(admin.post(url, json=body), 422, "longer than any booking may last (744 h")
    later = START + timedelta(days=40)
    longest = {
        "size": "tiny",
        "start": iso(later),
        "end": iso(later + timedelta(hours=744)),
        "user": "alice",
    }
    made = admin.post(url, json=longest)
    assert made.status_code == 201, made.text
    number = made.json()["id"]
    longer = admin.patch(f"{url}/{number}", json={"end": iso(later + timedelta(hours=745))})
    refused(longer, 422, "longer than any booking may last")
    assert admin.delete(f"{url}/{number}").status_code == 200


def test_idempotency_keys_are_checked(hub: ReservationHub, alice: requests.Session) -> None:
    url = hub.service_url + "api/reservations"
    for key in ("has space", "x" * 129, "é"):
        response = alice.post(url, json=booking(), headers={"Idempotency-Key": key})
        refused(response, 422, "Idempotency-Key")

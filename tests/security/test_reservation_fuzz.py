"""Schemathesis against the live reservation service: 0 server errors, 0 schema violations.

The real harness (a real ``jupyterhub`` managing the real service, on PostgreSQL,
where NULs and integer ranges bite) serves ``api/openapi.json``; schemathesis reads it
and sends what it derives from it (examples, the coverage phase's boundary and
negative cases, unexpected methods, then fuzzing in positive and negative mode) as
three callers: a user, an admin, and the hub's spawn gate. Bounded and repeatable:
a fixed seed, deterministic generation, no example database, at most `MAX_EXAMPLES`
fuzzed examples per operation and caller, no stateful phase.

schemathesis's own pytest integration (``from_fixture``) does not run on pytest 9 (it
writes ``Function._nodeid``), so the test builds the same per-operation hypothesis tests
with `get_all_tests`, the function that integration uses, and runs them itself.

Every built-in check runs, among them ``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance``, ``response_schema_conformance``,
``response_headers_conformance``, ``negative_data_rejection``, ``unsupported_method``,
``missing_required_header`` and ``ignored_auth``, except ``positive_data_acceptance``,
which is replaced by `positive_data_accepted`: a request the schema calls valid must
be accepted, or refused for a reason the schema cannot state (401/403/404/409, or a
422 naming a time or tier rule: a start in the past, an end before the start, ...).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from schemathesis.checks import load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aglais_hub.testing.reservations import ReservationHub
from tests.conftest import fresh_postgres
from tests.reservation_values import reservation_values

pytestmark = pytest.mark.timeout(600)
MAX_EXAMPLES = 100
SEED = 20261202
ROLES = ("user", "admin", "gate")
# 422s a valid request may get: rules about time and tiers no JSON Schema can state
RULES_422 = (
    "must be after",  # end after start
    "is in the past",
    "is longer than your tier",
    "is longer than any booking may last",  # 744 h, for everyone
    "must fall in the years 2000 to 2100",  # the written year; RFC 3339 allows 0000-9999
    "Ask for at most 92 days",  # a capacity window
    "There is no hub user",  # an admin booking for a name the hub does not know
    "was already used for a different request",  # an Idempotency-Key sent again
)
STATS: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReservationHub]:
    values = reservation_values()
    for tier in ("standard", "power"):
        values["tiers"][tier].update(
            activeBookings=10_000, bookingHours=10_000, bookingAheadDays=365
        )
    with (
        fresh_postgres() as url,
        ReservationHub(tmp_path_factory.mktemp("fuzz"), values, db_url=url) as hub,
    ):
        began = time.monotonic()
        yield hub
        report(time.monotonic() - began)


@pytest.fixture(scope="module")
def tokens(hub: ReservationHub) -> dict[str, str]:
    return {
        "user": hub.add_user("alice", ["users"]),
        "admin": hub.add_user("admin", ["admins"], admin=True),
        "gate": hub.gate_token,
    }


def api_schema(hub: ReservationHub, token: str):  # noqa: ANN201
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "allow-x00": True,
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "auth": {"openapi": {"hubToken": {"api_key": f"token {token}"}}},
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_url(hub.service_url + "api/openapi.json", config=config)


def positive_data_accepted(ctx, response, case) -> None:  # noqa: ANN001
    """`positive_data_acceptance`, but a 422 for a time or tier rule is an answer too."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if 200 <= status < 300 or status in (401, 403, 404, 409):
        return None
    message = ""
    if status == 422:
        try:
            message = response.json()["message"]
        except (ValueError, KeyError, TypeError):
            pass
        if any(words in message for words in RULES_422):
            return None
    raise AssertionError(f"The schema calls this request valid, but it got {status}: {message}")


@pytest.mark.parametrize("role", ROLES)
def test_the_api_keeps_its_schema(hub: ReservationHub, tokens: dict, role: str) -> None:
    load_all_checks()
    schema = api_schema(hub, tokens[role])

    def check(case) -> None:  # noqa: ANN001
        response = case.call(timeout=30)
        STATS[(role, case.operation.label)][response.status_code] += 1
        case.validate_response(
            response,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[positive_data_accepted],
        )

    failures = []
    tests = list(get_all_tests(schema=schema, test_func=check, settings=None, given_kwargs={}))
    for result in tests:
        assert isinstance(result, Ok), result.err()  # the document itself is sound
        operation, test = result.ok()
        try:
            test()
        except FailureGroup as group:
            failures.append(f"{role} {operation.label}:\n{group}")
        except AssertionError as error:
            failures.append(f"{role} {operation.label}:\n{error}")
    assert len(tests) >= 11  # schemathesis leaves out the document's own route
    assert not failures, "\n\n".join(failures)


def report(elapsed: float) -> None:
    """What ran: operations, requests per caller, statuses (shown with ``-s``)."""
    operations = {label for _, label in STATS}
    total = sum(sum(c.values()) for c in STATS.values())
    print(
        f"\nschemathesis: {len(operations)} operations x {len(ROLES)} callers, "
        f"{total} requests checked in {elapsed:.0f} s"
    )
    for (role, label), statuses in sorted(STATS.items()):
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        print(f"  {role:5} {label:40} {sum(statuses.values()):5}  ({shown})")
    server_errors = sum(n for c in STATS.values() for s, n in c.items() if s >= 500)
    print(f"  server errors: {server_errors}")


def test_unknown_routes_and_methods_answer_json(hub: ReservationHub, tokens: dict) -> None:
    """What the fuzzer cannot reach from the document: routes and methods it does not list."""
    session = hub.client(tokens["user"])
    for method, path, status in (
        ("GET", "api/nope", 404),
        ("GET", "api/reservations/x", 404),
        ("PUT", "api/reservations", 405),
        ("POST", "api/capacity", 405),
        ("OPTIONS", "api/sizes", 405),
        ("PATCH", "api/sizes", 405),
    ):
        response = session.request(method, hub.service_url + path, timeout=30)
        assert response.status_code == status, (method, path, response.status_code)
        assert response.json()["status"] == status
        if status == 405:
            assert response.headers["Allow"]
    assert requests.get(hub.service_url + "api/sizes", timeout=30).status_code == 401

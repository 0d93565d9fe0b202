"""`aglais-hub benchmark --size` and `--booking`: the benchmark inside a reservation.

The decisions on their own (how long to book, which listed booking is whose, whether it is
active), then end to end on the session's demo platform (`platform`: the real hub, its
reservation service and JupyterLab servers), with API tokens made as the Token page makes
them. Every end-to-end test leaves alice's and bob's servers stopped and their bookings
cancelled (the `clean` fixture), as the other test files of the session expect."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from tornado.httpclient import AsyncHTTPClient

from aglais_hub import cli
from aglais_hub.benchmark.booking import (
    MAX_DEFAULT_MINUTES,
    NO_SERVICE,
    Booking,
    ReservationClient,
    activity_problem,
    booking_window,
    choose_bookings,
    default_minutes,
    iso,
    run_title,
    size_problem,
)
from aglais_hub.benchmark.hub import server_label, server_path
from aglais_hub.benchmark.run import Placement, failed_result, placements_line, progress_line
from aglais_hub.benchmark.suite import NotebookEntry
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.hubprocess import HubProcess

SHORT = "07-library-versions.ipynb"
NOW = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
ENTRY = NotebookEntry(Path("/suite/x.ipynb"), seconds=20.0, figures=0, outputs=())
LIVE = ("pending", "active")


def booking(number: int, user: str, start: datetime = NOW, minutes: int = 30, **kw) -> Booking:
    fields = {"size": "small", "state": "active", **kw}
    return Booking(number, user, start=start, end=start + timedelta(minutes=minutes), **fields)


# -- how long to book ---------------------------------------------------------------------


def test_the_default_booking_covers_the_slow_limit_and_the_start_rounded_up_to_a_minute():
    assert default_minutes([12], 2.0, 600) == 11  # 24 s + 600 s = 10.4 min
    assert default_minutes([30], 2.0, 540) == 10  # exactly 10 min stays 10
    assert default_minutes([18, 20, 25, 20, 35, 30, 12], 2.0, 600) == 16
    assert default_minutes([100000], 2.0, 600) == MAX_DEFAULT_MINUTES == 480


def test_a_booking_window_starts_now_in_whole_seconds():
    start, end = booking_window(datetime(2026, 12, 2, 19, 0, 5, 999999, tzinfo=UTC), 11)
    assert iso(start) == "2026-12-02T19:00:05Z" and start.microsecond == 0
    assert end - start == timedelta(minutes=11)
    assert run_title("20261202-190005-abcdef") == "aglais-hub benchmark 20261202-190005-abcdef"


def test_a_size_the_service_does_not_offer_names_the_ones_it_does():
    assert size_problem("small", ["small", "large"]) is None
    assert size_problem("huge", ["small", "large"]) == (
        "--size huge: the reservation service offers no such size (it offers: small, large)"
    )
    assert size_problem("huge", []).endswith("(it offers: none)")


def test_a_booking_reads_the_services_json():
    found = Booking.from_json(
        {"id": 12, "user": "alice", "size": "small", "start": "2026-12-02T19:00:00Z",
         "end": "2026-12-02T19:30:00Z", "state": "active", "server_name": "r12", "title": "t"}
    )  # fmt: skip
    assert found == booking(12, "alice", title="t") and found.server_name == "r12"


# -- which booking is whose, and is it active ---------------------------------------------


def test_each_user_runs_on_their_own_booking_among_those_listed():
    alice, bob = booking(7, "alice"), booking(9, "bob")
    seen = {("alice", 7): alice, ("alice", 9): None, ("bob", 7): None, ("bob", 9): bob}
    assert choose_bookings([7, 9], ["alice", "bob"], seen, NOW) == (
        {"alice": alice, "bob": bob},
        [],
    )


def test_every_problem_with_the_listed_bookings_is_one_line():
    seen = {
        ("alice", 7): booking(7, "alice", start=NOW + timedelta(hours=1)),
        ("bob", 7): None,
        ("carol", 7): None,
        ("alice", 8): None,
        ("bob", 8): None,
        ("carol", 8): None,
    }
    chosen, problems = choose_bookings([7, 8], ["alice", "bob", "carol"], seen, NOW)
    assert chosen == {}
    assert problems == [
        "booking 8 is not alice's, bob's or carol's or does not exist",
        "booking 7 of alice starts at 2026-12-02T20:00:00Z: not active yet",
        "bob has no booking among --booking 7 8",
        "carol has no booking among --booking 7 8",
    ]
    two = {("alice", 7): booking(7, "alice"), ("alice", 8): booking(8, "alice")}
    assert choose_bookings([7, 8], ["alice"], two, NOW)[1] == [
        "alice has more than one booking among --booking 7 8 (7, 8): give one per user"
    ]
    assert choose_bookings([5], ["bob"], {("bob", 5): None}, NOW)[1] == [
        "booking 5 is not bob's or does not exist",
        "bob has no booking among --booking 5",
    ]


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        (booking(3, "bob"), None),
        # pending whose start has come: the scheduler activates it at its next tick
        (booking(3, "bob", start=NOW - timedelta(seconds=2), state="pending"), None),
        (booking(3, "bob", state="cancelled"), "booking 3 of bob was cancelled"),
        (booking(3, "bob", state="completed"), "booking 3 of bob ended at 2026-12-02T19:30:00Z"),
        (
            booking(3, "bob", start=NOW - timedelta(minutes=30)),
            "booking 3 of bob ended at 2026-12-02T19:00:00Z",
        ),
        (
            booking(3, "bob", start=NOW + timedelta(minutes=1), state="pending"),
            "booking 3 of bob starts at 2026-12-02T19:01:00Z: not active yet",
        ),
    ],
)
def test_only_a_booking_active_now_runs_the_benchmark(found, problem):
    assert activity_problem(found, NOW) == problem


# -- where it ran, in the lines a reader sees ---------------------------------------------


def test_the_server_and_booking_show_in_the_progress_and_summary_lines():
    booked = Placement.of(booking(12, "alice"))
    refused = failed_result(
        "bob", ENTRY, "the reservation service refused it", Placement(size="large")
    )
    default = failed_result("carol", ENTRY, "no server")
    on_r12 = failed_result("alice", ENTRY, "boom", booked)
    assert progress_line(on_r12) == "[alice] x.ipynb ERROR 0.0 s on r12 (expected 20 s): boom"
    assert progress_line(default) == "[carol] x.ipynb ERROR 0.0 s (expected 20 s): no server"
    assert placements_line([on_r12, on_r12, refused, default]) == (
        "servers: alice on r12 (booking 12, small), bob on no server (large), "
        "carol on the default server"
    )


def test_a_named_server_has_its_own_api_path():
    assert server_path("alice") == "hub/api/users/alice/server"
    assert server_path("alice", "r12") == "hub/api/users/alice/servers/r12"
    assert server_label("alice", "r12") == "alice's server r12"
    assert server_label("alice") == "alice's server"


# -- usage: exit 2 before the hub is asked ------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["benchmark", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_size_and_booking_together_or_minutes_alone_are_usage_errors(tmp_path, capsys):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice a1\n")
    common = ["--hub", "http://127.0.0.1:9/", "--tokens", str(tokens)]  # never asked
    with pytest.raises(SystemExit) as usage:
        cli.main(["benchmark", *common, "--size", "small", "--booking", "7"])
    assert usage.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    for bad in (["--booking", "0"], ["--booking", "x"], ["--size", "small", "--minutes", "0"]):
        with pytest.raises(SystemExit) as usage:
            cli.main(["benchmark", *common, *bad])
        assert usage.value.code == 2
    status, _, err = run_cli(capsys, *common, "--minutes", "5")
    assert status == 2 and "--minutes goes with --size" in err
    status, _, err = run_cli(capsys, *common, "--booking", "7", "7")
    assert status == 2 and "--booking 7 7: a booking listed twice" in err
    help_text = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--help"],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "at most 480" in " ".join(help_text.split())


# -- end to end ---------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def log_in(platform, user: str) -> HubClient:
    client = HubClient(platform.url)
    client.login(user, user)
    return client


def bookings_of(platform, token: str) -> list[dict]:
    """Every booking of the token's user, in any state."""
    response = requests.get(
        platform.reservations_url + "api/reservations", headers=auth(token), timeout=30
    )
    response.raise_for_status()
    return response.json()["reservations"]


def book(platform, token: str, start: datetime, minutes: int, size: str = "small") -> dict:
    end = start + timedelta(minutes=minutes)
    response = requests.post(
        platform.reservations_url + "api/reservations",
        json={"size": size, "start": iso(start), "end": iso(end), "title": "benchmark test"},
        headers=auth(token),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def get_booking(platform, token: str, number: int) -> dict:
    response = requests.get(
        platform.reservations_url + f"api/reservations/{number}", headers=auth(token), timeout=30
    )
    response.raise_for_status()
    return response.json()


def servers_of(platform, user: str, token: str) -> dict[str, dict]:
    """The user's servers that run, start or stop (the hub lists no others)."""
    response = requests.get(f"{platform.url}hub/api/users/{user}", headers=auth(token), timeout=30)
    response.raise_for_status()
    return response.json()["servers"]


def make_clean(platform, tokens: dict[str, str]) -> None:
    """Cancel every live booking of alice and bob, stop every server of theirs."""
    for user, token in tokens.items():
        for found in bookings_of(platform, token):
            if found["state"] in LIVE:
                requests.delete(
                    platform.reservations_url + f"api/reservations/{found['id']}",
                    headers=auth(token),
                    timeout=60,
                )
        for name in servers_of(platform, user, token):
            path = "server" if not name else f"servers/{name}"
            requests.delete(
                f"{platform.url}hub/api/users/{user}/{path}", headers=auth(token), timeout=60
            )
        deadline = time.monotonic() + 60
        while servers_of(platform, user, token) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert servers_of(platform, user, token) == {}
        assert [b for b in bookings_of(platform, token) if b["state"] in LIVE] == []


@pytest.fixture(scope="module")
def tokens(platform) -> dict[str, str]:
    """API tokens of alice (standard tier) and bob (power), made as the Token page does."""
    return {user: log_in(platform, user).new_token("booking test") for user in ("alice", "bob")}


@pytest.fixture(scope="module")
def tokens_files(tokens, tmp_path_factory) -> dict[str, Path]:
    """Tokens files: ``alice``, ``bob`` (one user each) and ``both``."""
    folder = tmp_path_factory.mktemp("booking-tokens")
    files = {}
    for name, users in (("alice", ["alice"]), ("bob", ["bob"]), ("both", ["alice", "bob"])):
        files[name] = folder / f"{name}.txt"
        files[name].write_text("".join(f"{u} {tokens[u]}\n" for u in users))
    return files


@pytest.fixture
def clean(platform, tokens) -> Iterator[None]:
    """Nothing of alice's or bob's booked or running before the test, nor after it."""
    make_clean(platform, tokens)
    yield
    make_clean(platform, tokens)


def benchmark(platform, tokens_file: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command for the short notebook."""
    done = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--hub", platform.url,
         "--tokens", str(tokens_file), "--only", SHORT, "--out", str(out), *args],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    print(done.stdout, done.stderr, sep="\n")
    return done


def results_of(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def size_run(platform, tokens, tokens_files, tmp_path_factory) -> Iterator[dict]:
    """alice runs the short notebook with --size small; what the run left behind."""
    make_clean(platform, tokens)
    before = {b["id"] for b in bookings_of(platform, tokens["alice"])}
    out = tmp_path_factory.mktemp("size-run")
    done = benchmark(platform, tokens_files["alice"], out, "--size", "small")
    new = [b for b in bookings_of(platform, tokens["alice"]) if b["id"] not in before]
    servers = servers_of(platform, "alice", tokens["alice"])
    yield {"done": done, "out": out, "new": new, "servers": servers}
    make_clean(platform, tokens)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_size_books_runs_on_the_bookings_server_and_cancels_it_after(size_run):
    done = size_run["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    (made,) = size_run["new"]  # exactly one booking: the run's
    number, server = made["id"], made["server_name"]
    assert server == f"r{number}" and made["size"] == "small"
    assert made["title"].startswith("aglais-hub benchmark ")
    assert made["state"] == "cancelled"  # cancelled at the end, not left to run out
    assert size_run["servers"] == {}  # no server of alice's left: default or named
    assert f"[alice] booked small until {made['end']}: booking {number}, server {server}" in (
        done.stdout
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith(f"[alice] {SHORT} ")]
    assert f" on {server} (expected " in line and " ERROR " not in line
    assert f"servers: alice on {server} (booking {number}, small)" in done.stdout
    assert f"[alice] booking {number} cancelled" in done.stdout
    (result,) = results_of(size_run["out"])
    assert result["verdict"] in ("PASS", "SLOW")  # SLOW only on a loaded machine


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_results_json_records_the_server_and_booking_of_each_result(size_run):
    (made,) = size_run["new"]
    (result,) = results_of(size_run["out"])
    assert result["server_name"] == made["server_name"]
    assert result["booking"] == made["id"] and result["size"] == "small"


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_booking_runs_each_user_on_their_own_booking_and_leaves_it_booked(
    platform, tokens, tokens_files, clean, tmp_path
):
    now = datetime.now(UTC)
    alices = book(platform, tokens["alice"], now, 20)
    bobs = book(platform, tokens["bob"], now, 20)
    assert servers_of(platform, "alice", tokens["alice"]) == {}
    done = benchmark(
        platform, tokens_files["both"], tmp_path, "--booking", str(bobs["id"]), str(alices["id"])
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for user, mine in (("alice", alices), ("bob", bobs)):
        server = mine["server_name"]
        (line,) = [x for x in done.stdout.splitlines() if x.startswith(f"[{user}] {SHORT} ")]
        assert f" on {server} (expected " in line
        assert f"[{user}] server {server} stopped" in done.stdout  # it was not running before
        assert get_booking(platform, tokens[user], mine["id"])["state"] == "active"  # still
        assert servers_of(platform, user, tokens[user]) == {}
    assert (
        f"servers: alice on {alices['server_name']} (booking {alices['id']}, small), "
        f"bob on {bobs['server_name']} (booking {bobs['id']}, small)"
    ) in done.stdout


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_bookings_server_found_running_is_left_running(
    platform, tokens, tokens_files, clean, tmp_path
):
    mine = book(platform, tokens["alice"], datetime.now(UTC), 15)
    server = mine["server_name"]
    assert log_in(platform, "alice").start_server(server).get("ready")
    done = benchmark(platform, tokens_files["alice"], tmp_path, "--booking", str(mine["id"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[alice] server already running after " in done.stdout
    assert f"server {server} stopped" not in done.stdout
    assert servers_of(platform, "alice", tokens["alice"])[server]["ready"]  # as found
    assert get_booking(platform, tokens["alice"], mine["id"])["state"] == "active"


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_booking_again_with_the_same_key_never_books_twice(platform, tokens, clean):
    async def twice() -> tuple[Booking, Booking]:
        http = AsyncHTTPClient(force_instance=True)
        try:
            client = ReservationClient(http, platform.url, "alice", tokens["alice"])
            start, end = booking_window(datetime.now(UTC), 5)
            key = f"retry-test-{secrets.token_hex(4)}"
            first = await client.book("small", start, end, "retry test", key)
            again = await client.book("small", start, end, "retry test", key)
            return first, again
        finally:
            http.close()

    first, again = asyncio.run(twice())
    assert first == again and first.state == "active" and first.server_name == f"r{first.id}"
    live = [b for b in bookings_of(platform, tokens["alice"]) if b["state"] in LIVE]
    assert [b["id"] for b in live] == [first.id]


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_an_unknown_size_is_refused_naming_the_offered_sizes(
    platform, tokens, tokens_files, clean, tmp_path, capsys
):
    response = requests.get(
        platform.reservations_url + "api/sizes", headers=auth(tokens["alice"]), timeout=30
    )
    offered = [size["name"] for size in response.json()["sizes"]]
    assert offered  # the demo offers sizes: the message must list them all
    before = bookings_of(platform, tokens["alice"])
    status, out, err = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_files["alice"]),
        "--size", "huge", "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 2
    assert err.strip().splitlines() == [
        "aglais-hub benchmark: --size huge: the reservation service offers no such size "
        f"(it offers: {', '.join(offered)})"
    ]
    assert bookings_of(platform, tokens["alice"]) == before  # nothing booked
    assert "starting the server" not in out and "booking huge" not in out


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_another_users_booking_and_a_future_one_are_refused_before_any_server_starts(
    platform, tokens, tokens_files, clean, tmp_path, capsys
):
    mine = book(platform, tokens["alice"], datetime.now(UTC), 10)
    status, out, err = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_files["bob"]),
        "--booking", str(mine["id"]), "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 2
    assert err.strip().splitlines() == [
        f"aglais-hub benchmark: booking {mine['id']} is not bob's or does not exist",
        f"aglais-hub benchmark: bob has no booking among --booking {mine['id']}",
    ]
    assert "starting the server" not in out
    assert servers_of(platform, "bob", tokens["bob"]) == {}

    later = book(platform, tokens["alice"], datetime.now(UTC) + timedelta(hours=1), 10)
    status, out, err = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_files["alice"]),
        "--booking", str(later["id"]), "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 2
    assert err.strip().splitlines() == [
        f"aglais-hub benchmark: booking {later['id']} of alice starts at {later['start']}: "
        "not active yet"
    ]
    assert "starting the server" not in out
    assert servers_of(platform, "alice", tokens["alice"]) == {}


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_refused_booking_is_an_error_in_the_services_words_and_nothing_is_left(
    platform, tokens, tokens_files, clean, tmp_path, capsys
):
    # alice's tier (standard) may not use the large size (minTier: power)
    status, out, _ = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_files["alice"]),
        "--only", SHORT, "--size", "large", "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 1
    (result,) = results_of(tmp_path)
    assert result["verdict"] == "ERROR"
    assert result["detail"].startswith("the reservation service refused alice's booking of large: ")
    assert "power" in result["detail"].lower()  # the service's own reason names the tier
    assert "servers: alice on no server (large)" in out
    assert [b for b in bookings_of(platform, tokens["alice"]) if b["state"] in LIVE] == []
    assert servers_of(platform, "alice", tokens["alice"]) == {}


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_an_interrupted_size_run_cancels_its_booking_and_stops_its_server(
    platform, tokens, tokens_files, clean, tmp_path
):
    before = {b["id"] for b in bookings_of(platform, tokens["alice"])}
    process = subprocess.Popen(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--hub", platform.url,
         "--tokens", str(tokens_files["alice"]), "--only", SHORT, "--size", "small",
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    try:
        for line in process.stdout:  # interrupt as the server starts: a pending spawn
            lines.append(line)
            if "starting the server r" in line:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines) + rest
    print(output)
    assert process.returncode == 130, output
    assert "interrupted: no results written" in output
    (made,) = [b for b in bookings_of(platform, tokens["alice"]) if b["id"] not in before]
    assert made["state"] == "cancelled"
    assert f"[alice] booking {made['id']} cancelled" in output
    assert servers_of(platform, "alice", tokens["alice"]) == {}


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_hub_without_a_reservation_service_gives_one_line(tmp_path, capsys):
    # a real JupyterHub with no services of ours: what --size and --booking meet there
    with HubProcess(tmp_path / "hub", "") as hub:
        assert hub.api.post(f"{hub.url}/hub/api/users/alice").status_code == 201
        made = hub.api.post(f"{hub.url}/hub/api/users/alice/tokens", json={"note": "t"})
        tokens = tmp_path / "tokens"
        tokens.write_text(f"alice {made.json()['token']}\n")
        for where in (["--size", "small"], ["--booking", "3"]):
            status, out, err = run_cli(
                capsys, "--hub", hub.url, "--tokens", str(tokens), "--out", str(tmp_path), *where
            )
            assert status == 2
            assert err.strip().splitlines() == [f"aglais-hub benchmark: {NO_SERVICE}"]
            assert "starting the server" not in out
        assert hub.api.get(f"{hub.url}/hub/api/users/alice").json()["servers"] == {}

"""End to end: bookings, the spawn gate and the queue on the whole platform.

The real hub, configurable-http-proxy, npm oidc-provider, the reservation service
(managed by the hub) and LocalSparkSpawner; the web page in headless Chromium.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform
from aglais_hub.testing.reservations import restart_service
from tests.reservation_values import reservation_values

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPARK_CONF = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print(spark.sparkContext.master, spark.conf.get('spark.driver.memory'))
spark.stop()
"""


class Webhook(http.server.BaseHTTPRequestHandler):
    """Records the service's booking events (what an e-mail bridge would receive)."""

    events: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.events.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def rplatform(tmp_path_factory: pytest.TempPathFactory, webhook: str) -> Iterator[Platform]:
    """7.2 cores: two standard-tier servers (3.1 cores each, with the auth proxy) fit, a
    third waits; the large size (7.1 cores) fits alone."""
    values = reservation_values(capacity={"cores": 7.2, "memory": "64Gi"}, webhookUrl=webhook)
    values["auth"]["allowedGroups"] = ["users", "power"]
    platform = Platform(tmp_path_factory.mktemp("reservations-e2e"), values)
    for name in ("carol", "dave"):
        platform.set_user(name, ["users"])
    platform.start()
    yield platform
    platform.stop()


def logged_in(platform: Platform, name: str) -> HubClient:
    client = HubClient(platform.url)
    client.login(name, name)
    return client


def iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def api_of(client: HubClient, platform: Platform) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"token {client.new_token()}"
    session.base = platform.reservations_url + "api/"
    return session


def test_a_booking_from_before_its_start_to_after_its_end(rplatform: Platform) -> None:
    alice, bob = logged_in(rplatform, "alice"), logged_in(rplatform, "bob")
    api = api_of(alice, rplatform)
    # whole seconds, as booked: the window the service holds is exactly [start, end)
    start = (datetime.now(UTC) + timedelta(seconds=25)).replace(microsecond=0)
    end = start + timedelta(seconds=50)
    response = api.post(
        api.base + "reservations",
        json={"size": "tiny", "start": iso(start), "end": iso(end), "title": "Workshop"},
    )
    assert response.status_code == 201, response.text
    booking = response.json()
    server = booking["server_name"]

    early = alice.start_server(server)
    assert early.get("failed"), early
    assert "Your booking 'Workshop' starts at " + booking["start"] in early["message"]

    # bob can neither open alice's spawn page nor start an r<id> of his own
    assert bob.get(f"hub/spawn/alice/{server}").status_code in (403, 404)
    stolen = bob.start_server(server)
    assert stolen.get("failed") and f"no booking {booking['id']} of yours" in stolen["message"]
    bob.session.delete(
        bob.url(f"hub/api/users/bob/servers/{server}"),
        headers=bob.xsrf_headers(),
        json={"remove": True},
    )

    while datetime.now(UTC) < start:
        time.sleep(0.5)
    event = alice.start_server(server)
    assert event.get("ready"), event
    messages = [e.get("message", "") for e in event["events"]]
    assert any("Booking 'Workshop' is active until " + booking["end"] in m for m in messages)
    # the booked size, not the tier's: what the spawner applied, and what Spark got
    model = alice.get("hub/api/users/alice").json()["servers"][server]
    assert model["display_name"] == "Workshop"  # the home page lists it by its title
    applied = model["user_options"]["applied"]
    assert applied == {
        "booking": booking["id"],
        "executors": 0,
        "executor_cores": 1,
        "executor_memory": 2**30,
        "driver_cores": 1,
        "driver_memory": 768 * 2**20,
    }
    assert alice.open_server(f"user/alice/{server}/").status_code == 200
    assert "local[1] 768m" in alice.run_code(f"user/alice/{server}/", SPARK_CONF)

    # the owner is warned (warnMinutes: 1) on the page's announcement bar and by webhook
    page = alice.get_with_consent("services/reservations/").text
    assert "Your booking &#39;Workshop&#39; ends at " + booking["end"] in page

    # the service dies mid-booking; the hub restarts it and nothing is lost
    restart_service(rplatform.reservations_port, rplatform.reservations_url + "api/health")
    assert api.get(api.base + f"reservations/{booking['id']}").json()["state"] == "active"

    alice.wait_stopped("alice", server, timeout=(end - datetime.now(UTC)).total_seconds() + 30)
    assert datetime.now(UTC) >= end
    assert api.get(api.base + f"reservations/{booking['id']}").json()["state"] == "completed"
    events = [e["event"] for e in Webhook.events if e["booking"]["id"] == booking["id"]]
    assert events == ["activated", "warned", "completed"], events
    late = alice.start_server(server)
    assert late.get("failed") and "ended at " + booking["end"] in late["message"]


def test_a_third_unbooked_server_waits_in_the_queue(rplatform: Platform) -> None:
    alice, carol, dave = (logged_in(rplatform, n) for n in ("alice", "carol", "dave"))
    assert alice.start_server("work").get("ready")
    assert carol.start_server("work").get("ready")
    outcome: dict = {}
    waiting = threading.Thread(
        target=lambda: outcome.update(dave.start_server("work", timeout=240))
    )
    waiting.start()
    watcher = requests.Session()  # a second connection with dave's cookies
    watcher.cookies.update(dave.session.cookies)
    deadline = time.monotonic() + 60
    queued = False
    while time.monotonic() < deadline and not queued:
        try:
            progress = watcher.get(
                dave.url("hub/api/users/dave/servers/work/progress"), stream=True, timeout=5
            )
            for line in progress.iter_lines(decode_unicode=True):
                if "position 1 in queue" in (line or ""):
                    queued = True
                    break
            progress.close()
        except requests.RequestException:
            time.sleep(0.5)
    assert queued, "dave's progress never showed 'position 1 in queue'"
    assert not outcome, "dave started although the shared cluster was full"
    alice.session.delete(
        alice.url("hub/api/users/alice/servers/work"), headers=alice.xsrf_headers()
    )
    waiting.join(240)
    assert outcome.get("ready"), outcome
    messages = [e.get("message", "") for e in outcome["events"]]
    assert any("position 1 in queue" in m for m in messages), messages
    for client, name in ((carol, "carol"), (dave, "dave")):
        client.session.delete(
            client.url(f"hub/api/users/{name}/servers/work"), headers=client.xsrf_headers()
        )


def test_alice_books_on_the_web_page(rplatform: Platform, browser) -> None:
    """Headless Chromium: the hub's login, the provider's pages, then the booking form."""
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(rplatform.reservations_url)
    page.click("text=Sign in with")  # the hub's login page (oauthenticator)
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "alice")
    page.click("button[type=submit]")
    if page.locator("text=Allow").count():  # the provider's consent page
        page.click("text=Allow")
    page.wait_for_selector("#aglais-reservations")
    assert page.locator("#jupyterhub-logo").count() == 1  # the hub's own navbar
    assert page.locator("#login_widget").inner_text().strip().startswith("alice")

    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    page.select_option("#size", "small")
    page.fill("#start", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#hours", "2")
    page.fill("#title", "<script>alert(1)</script>")
    page.click("#book")
    page.wait_for_selector("#notice")
    row = page.locator("#mine tr[data-booking]").last
    assert row.locator(".booking-title").inner_text() == "<script>alert(1)</script>"
    assert iso(start) in row.inner_text() and "pending" in row.inner_text()
    assert dialogs == []  # the title was text, never a script

    # cancel it from the page; the webhook hears of it
    number = int(row.get_attribute("data-booking"))
    row.locator("text=Cancel").click()
    page.wait_for_selector("#notice")
    assert "cancelled" in page.locator("#mine tr[data-booking]").last.inner_text()
    assert ("cancelled", number) in [(e["event"], e["booking"]["id"]) for e in Webhook.events]
    page.close()


def test_the_page_refuses_a_post_without_the_xsrf_token(rplatform: Platform) -> None:
    alice = logged_in(rplatform, "alice")
    page = alice.get_with_consent("services/reservations/")
    assert page.status_code == 200 and 'name="_xsrf"' in page.text
    start = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:00")
    form = {"action": "book", "size": "tiny", "start": start, "hours": "1", "title": "x"}
    forged = alice.session.post(rplatform.reservations_url, data=form, allow_redirects=False)
    assert forged.status_code == 403
    token = page.text.split('name="_xsrf" value="')[1].split('"')[0]
    genuine = alice.session.post(
        rplatform.reservations_url, data={**form, "_xsrf": token}, allow_redirects=False
    )
    assert genuine.status_code == 303 and "notice=booked" in genuine.headers["Location"]


def test_admins_see_every_booking_on_the_page_and_cancel_or_book_for_a_user(
    rplatform: Platform,
) -> None:
    alice, admin = logged_in(rplatform, "alice"), logged_in(rplatform, "admin")
    api = api_of(alice, rplatform)
    start = (datetime.now(UTC) + timedelta(days=4)).replace(minute=0, second=0, microsecond=0)
    booking = api.post(
        api.base + "reservations",
        json={
            "size": "small",
            "start": iso(start),
            "end": iso(start + timedelta(hours=1)),
            "title": "alice's run",
        },
    ).json()
    page = admin.get_with_consent("services/reservations/")
    assert page.status_code == 200 and 'id="everyone"' in page.text
    assert f'data-booking="{booking["id"]}"' in page.text and "alice&#39;s run" in page.text
    token = page.text.split('name="_xsrf" value="')[1].split('"')[0]
    cancel = admin.session.post(
        rplatform.reservations_url,
        allow_redirects=False,
        data={"_xsrf": token, "action": "cancel", "id": str(booking["id"])},
    )
    assert cancel.status_code == 303
    assert api.get(api.base + f"reservations/{booking['id']}").json()["state"] == "cancelled"
    # on alice's behalf: the large size, which her tier could not book herself
    made = admin.session.post(
        rplatform.reservations_url,
        allow_redirects=False,
        data={
            "_xsrf": token,
            "action": "book",
            "size": "large",
            "user": "alice",
            "hours": "1",
            "start": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "title": "for alice",
        },
    )
    assert made.status_code == 303, made.text
    mine = api.get(api.base + "reservations").json()["reservations"]
    assert [(b["size"], b["created_by"]) for b in mine if b["title"] == "for alice"] == [
        ("large", "admin")
    ]
    # alice's own page offers no "for user" field and shows no one else's bookings
    own = alice.get_with_consent("services/reservations/").text
    assert 'id="for-user"' not in own and 'id="everyone"' not in own

"""Security: another web site must not reach a user's Zeppelin with the user's cookie.

End to end on the real platform (real hub and oidc-provider login, the real auth proxy
in alice's pod on the testing cluster, the Zeppelin stand-in behind it), as a browser
would see it: a cross-site POST or WebSocket with alice's cookies is refused and does
nothing, the same requests from the hub's own origin work; the proxy's cookies are
SameSite (and Secure over HTTPS); ``_aglais/health`` tells a caller without a login
nothing. Then the pure rules of `aglais_hub.podproxy.crosssite`.
"""

from __future__ import annotations

import json
from urllib.parse import urljoin, urlparse

import pytest
import requests
import websocket
from tornado.httputil import HTTPHeaders

from aglais_hub.podproxy.crosssite import (
    cross_site_refusal,
    is_cors_header,
    origin_allowed,
    origin_of,
    public_origins_from,
)
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.rawapi import wait_for
from tests.test_zeppelin_spawner import Kube, get, running_platform

EVIL = "https://evil.example"
NOTES = "user/alice/api/notebook"


@pytest.fixture(scope="module")
def cluster(dev):
    """The real control plane (conftest's ``dev``), seen by the test as its admin."""
    return Kube(dev)


@pytest.fixture(scope="module")
def platform(cluster, tmp_path_factory):
    with running_platform(cluster, tmp_path_factory.mktemp("platform")) as running:
        yield running


@pytest.fixture(scope="module")
def alice(platform):
    """Alice, logged in, with her Zeppelin server running and answering."""
    client = HubClient(platform.url)
    client.login("alice", "alice")
    event = client.start_server(timeout=120)
    assert event.get("ready"), (event, platform.log_tail())
    wait_for(
        lambda: client.get("user/alice/api/version").status_code == 200,
        timeout=60,
        what="Zeppelin to answer",
    )
    return client


def hub_origin(client: HubClient) -> str:
    parts = urlparse(client.base_url)
    return f"{parts.scheme}://{parts.netloc}"


def note_names(client: HubClient) -> list[str]:
    response = client.get(NOTES)
    assert response.status_code == 200, response.text
    return [n["name"] for n in response.json()["body"]]


def set_cookies(response: requests.Response) -> list[str]:
    return response.raw.headers.getlist("Set-Cookie")


def attributes(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")[1:]}


@pytest.mark.e2e
def test_a_cross_site_post_with_her_cookie_creates_no_note(alice):
    before = note_names(alice)
    for headers in (
        {"Origin": EVIL},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
        {"Origin": "null"},  # a sandboxed page or a redirect's form
        # Sec-Fetch-Site (the browser's own word) wins over a matching Origin
        {"Origin": hub_origin(alice), "Sec-Fetch-Site": "same-site"},
    ):
        response = alice.session.post(
            alice.url(NOTES), json={"name": "pwned"}, headers=headers, timeout=60
        )
        assert response.status_code == 403, (headers, response.status_code, response.text)
        assert "cross-site request refused" in response.json()["message"], response.text
    # a form, as a page on another site would post it
    form = alice.session.post(
        alice.url(NOTES), data={"name": "pwned"}, headers={"Origin": EVIL}, timeout=60
    )
    assert form.status_code == 403
    assert f"Origin {EVIL}" in form.json()["message"]
    # a cookie request that says nothing of where it comes from is refused too
    bare = requests.post(
        alice.url(NOTES), json={"name": "pwned"}, cookies=alice.session.cookies, timeout=60
    )
    assert bare.status_code == 403 and "without Origin" in bare.json()["message"], bare.text
    # a made-up token does not turn a cookie request into a token-authenticated one
    forged = alice.session.post(
        alice.url(NOTES),
        json={"name": "pwned"},
        timeout=60,
        headers={"Origin": EVIL, "Authorization": "token nonsense"},
    )
    assert forged.status_code == 403
    assert note_names(alice) == before, "a refused request created a note"

    # the same request from the hub's own origin: Zeppelin's UI keeps working
    same = alice.session.post(
        alice.url(NOTES),
        json={"name": "same-origin"},
        headers={"Origin": hub_origin(alice)},
        timeout=60,
    )
    assert same.status_code == 200, same.text
    fetch = requests.post(
        alice.url(NOTES),
        json={"name": "fetch-same-origin"},
        timeout=60,
        cookies=alice.session.cookies,
        headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
    )
    assert fetch.status_code == 200, fetch.text
    referer = requests.post(
        alice.url(NOTES),
        json={"name": "old-browser"},
        timeout=60,
        cookies=alice.session.cookies,
        headers={"Referer": alice.url("user/alice/")},
    )
    assert referer.status_code == 200, referer.text
    # an API token is not a cross-site risk (no page can make a browser send it)
    token = alice.new_token("crosssite")
    scripted = requests.post(
        alice.url(NOTES),
        json={"name": "scripted"},
        timeout=60,
        headers={"Authorization": f"token {token}", "Origin": EVIL},
    )
    assert scripted.status_code == 200, scripted.text
    assert sorted(note_names(alice)) == sorted(
        [*before, "same-origin", "fetch-same-origin", "old-browser", "scripted"]
    )


def ws_url(client: HubClient) -> str:
    return client.url("user/alice/ws").replace("http", "ws", 1)


def cookie_header(client: HubClient) -> str:
    return "Cookie: " + "; ".join(f"{c.name}={c.value}" for c in client.session.cookies)


@pytest.mark.e2e
def test_a_cross_site_websocket_with_her_cookie_is_refused(alice):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            ws_url(alice), header=[cookie_header(alice)], origin=EVIL, timeout=30
        )
    assert refused.value.status_code == 403
    # from the hub's own origin it opens and talks to Zeppelin
    ws = websocket.create_connection(
        ws_url(alice), header=[cookie_header(alice)], origin=hub_origin(alice), timeout=30
    )
    try:
        assert ws.getstatus() == 101
        ws.send(json.dumps({"op": "PING"}))
        assert json.loads(ws.recv())["op"] == "PONG"
    finally:
        ws.close()


@pytest.mark.e2e
def test_the_proxys_cookies_are_samesite_and_secure_over_https(platform, alice):
    # a fresh browser of alice's: the hub login, then her server's own OAuth
    fresh = HubClient(platform.url)
    fresh.login("alice", "alice")
    opened = fresh.get("user/alice/api/version")
    assert opened.status_code == 200
    proxy = [
        r for r in [*opened.history, opened] if urlparse(r.url).path.startswith("/user/alice/")
    ]
    cookies = [c for r in proxy for c in set_cookies(r)]
    names = {c.partition("=")[0] for c in cookies}
    assert {"jupyterhub-user-alice", "jupyterhub-user-alice-oauth-state", "_xsrf"} <= names, cookies
    for cookie in cookies:
        assert "samesite=lax" in attributes(cookie), cookie
        assert "secure" not in attributes(cookie), cookie  # plain HTTP here

    # the same over HTTPS (a TLS-terminating proxy says so with X-Forwarded-Proto)
    https = {"X-Forwarded-Proto": "https"}
    other = HubClient(platform.url)
    other.login("alice", "alice")
    first = other.session.get(
        other.url("user/alice/api/version"), headers=https, allow_redirects=False, timeout=60
    )
    assert first.status_code == 302, first.text
    state = set_cookies(first)
    assert state and all({"secure", "httponly", "samesite=lax"} <= attributes(c) for c in state)
    # the hub's authorize step, over the plain HTTP this client logged in with
    location = urljoin(first.url, first.headers["Location"])
    while not urlparse(location).path.endswith("/oauth_callback"):
        step = other.session.get(location, allow_redirects=False, timeout=60)
        assert step.status_code in (302, 303), (step.url, step.status_code, step.text[-2000:])
        location = urljoin(step.url, step.headers["Location"])
    # back at the proxy: an HTTPS browser sends its Secure state cookie back
    sent = "; ".join(c.split(";")[0] for c in state)
    done = requests.get(
        location, headers={**https, "Cookie": sent}, allow_redirects=False, timeout=60
    )
    assert done.status_code == 302, done.text
    login = [c for c in set_cookies(done) if not c.startswith("jupyterhub-user-alice-oauth-state")]
    assert {c.partition("=")[0] for c in login} == {"jupyterhub-user-alice", "_xsrf"}, login
    for cookie in login:
        assert {"secure", "samesite=lax"} <= attributes(cookie), cookie


@pytest.mark.e2e
def test_health_tells_a_caller_without_login_nothing(cluster, platform, alice):
    health = "user/alice/_aglais/health"
    anonymous = requests.get(alice.url(health), timeout=30)
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    bob = HubClient(platform.url)
    bob.login("bob", "bob")
    assert bob.get(health).json() == {"status": "ok"}  # not hers to see
    # the readiness probe's way in: the pod's port itself, with no login
    pod = get(cluster, "pods", "aglais-alice", "zeppelin-alice")
    direct = requests.get(f"http://{pod['status']['podIP']}:8888/{health}", timeout=30)
    assert direct.status_code == 200 and direct.json() == {"status": "ok"}
    # alice herself sees the state of her Zeppelin
    assert alice.get(health).json() == {"proxy": "ok", "zeppelin": "up"}


# the rules, as pure functions


def headers(**values: str) -> HTTPHeaders:
    found = HTTPHeaders({"Host": "hub.example.org"})
    for key, value in values.items():
        found[key.replace("_", "-")] = value
    return found


def refusal(method: str = "POST", **values: str) -> str | None:
    return cross_site_refusal(method, headers(**values))


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_are_not_checked(method):
    assert cross_site_refusal(method, headers(Origin=EVIL, Sec_Fetch_Site="cross-site")) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_every_unsafe_method_is_checked(method):
    assert refusal(method, Origin=EVIL)


def test_sec_fetch_site_decides_when_present():
    assert refusal(Sec_Fetch_Site="same-origin") is None
    assert refusal(Sec_Fetch_Site="same-origin", Origin="https://hub.example.org") is None
    for site in ("cross-site", "same-site", "none"):
        found = refusal(Sec_Fetch_Site=site, Origin="https://hub.example.org")
        assert found and f"Sec-Fetch-Site: {site}" in found


def test_without_sec_fetch_site_the_origin_must_be_the_host():
    assert refusal(Origin="https://hub.example.org") is None
    assert refusal(Origin="http://hub.example.org:80") is None
    assert refusal(Origin="https://HUB.example.org:443") is None
    found = refusal(Origin=EVIL)
    assert found and "Origin https://evil.example to host hub.example.org" in found
    assert refusal(Origin="https://hub.example.org.evil.example")
    assert refusal(Origin="https://hub.example.org:8443")
    assert refusal(Origin="null")
    assert refusal(Origin="")


def test_the_referer_stands_in_for_a_missing_origin():
    assert refusal(Referer="https://hub.example.org/user/alice/") is None
    found = refusal(Referer="https://evil.example/attack.html")
    assert found and "Referer https://evil.example" in found


def test_a_request_with_nothing_to_tell_is_refused_like_jupyterhub_does():
    found = refusal()
    assert found and "without Origin, Referer or Sec-Fetch-Site" in found
    assert "Authorization: token" in found  # says what a script should do instead


def test_a_token_authenticated_request_is_not_cross_site_exposed():
    assert cross_site_refusal("POST", headers(Origin=EVIL), token_authenticated=True) is None


def test_the_hubs_public_origins_are_allowed_besides_the_host():
    public = public_origins_from(
        {
            "JUPYTERHUB_PUBLIC_URL": "https://aglais.example.org/user/a/",
            "JUPYTERHUB_PUBLIC_HUB_URL": "https://aglais.example.org/hub/",
        }
    )
    assert public == ("https://aglais.example.org",)
    assert public_origins_from({"JUPYTERHUB_PUBLIC_URL": ""}) == ()
    h = headers(Origin="https://aglais.example.org")
    assert cross_site_refusal("POST", h, public_origins=public) is None
    assert cross_site_refusal("POST", h) is not None
    assert origin_allowed("https://aglais.example.org", "10.0.0.5:8888", public)
    assert not origin_allowed("http://aglais.example.org", "10.0.0.5:8888", public)
    assert not origin_allowed(EVIL, "10.0.0.5:8888", public)


def test_origins_are_normalised():
    assert origin_of("HTTPS://Hub.Example.org:443/path?q") == "https://hub.example.org"
    assert origin_of("http://[::1]:8000") == "http://[::1]:8000"
    assert origin_of("null") is None and origin_of("file:///etc/passwd") is None
    assert origin_allowed("http://[::1]:8000", "[::1]:8000")


def test_zeppelins_cors_answers_are_dropped():
    for name in (
        "Access-Control-Allow-Origin",
        "access-control-allow-credentials",
        "Access-Control-Allow-Methods",
    ):
        assert is_cors_header(name)
    assert not is_cors_header("Content-Type")

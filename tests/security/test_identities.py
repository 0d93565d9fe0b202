"""Standing security test: distinct identities never become one hub account.

Hub usernames are normalised from the provider's username claim (lower case,
accents folded, punctuation runs made '-'), so 'ALICE', 'álice' and 'alice' all name
the account 'alice'. Each account is bound to the provider's subject at its first
login; a login of another subject whose name normalises to an existing account is
refused, and gets nothing of that account: no hub session, no API, no server.

End to end: the real `aglais-hub demo` (JupyterHub, configurable-http-proxy, the npm
oidc-provider), logins through the provider's own pages. At the development
provider a user's subject is their login name (the users-file key) and their
``preferred_username`` is the same unless the entry's ``claims`` override it.
"""

from __future__ import annotations

import html
from urllib.parse import urlparse

import pytest

from aglais_hub.testing.hubclient import HubClient, LoginRefused

pytestmark = pytest.mark.e2e

REFUSAL = "is already used by another identity at your identity provider"


def logged_in(platform, login: str) -> HubClient:
    client = HubClient(platform.url)
    client.login(login, login)
    return client


def refused(platform, login: str) -> HubClient:
    """Log in as ``login`` at the provider, expecting the hub to refuse the account."""
    client = HubClient(platform.url)
    with pytest.raises(LoginRefused) as refusal:
        client.login(login, login)
    page = refusal.value.response
    assert page.status_code == 403, page.text[-2000:]
    text = html.unescape(page.text)
    assert REFUSAL in text, text[-2000:]
    assert "Ask an administrator" in text
    return client


def assert_kept_out(response, running: bool) -> None:
    """Refused by the running server (403), or sent to the hub's login page (none running)."""
    path = urlparse(response.url).path
    kept_out = response.status_code == 403 if running else path == "/hub/login"
    assert kept_out, (response.status_code, path)


def assert_no_way_in(client: HubClient, login: str, name: str, running: bool = False) -> None:
    """The refused browser is nobody at the hub and gets nothing of ``name``'s."""
    assert client.get("hub/api/user").status_code == 403
    assert client.get(f"hub/api/users/{name}").status_code == 403
    assert_kept_out(client.get(f"user/{name}/api/status"), running)
    # the server's page sends the browser to the hub's login page, not into the server
    lab = client.open_server(f"user/{name}/")
    assert urlparse(lab.url).path == "/hub/login", (lab.status_code, lab.url)
    # and logging in again (the provider's session is still there) is refused again
    with pytest.raises(LoginRefused) as again:
        client.login(login, login)
    assert REFUSAL in html.unescape(again.value.response.text)
    assert_kept_out(client.get(f"user/{name}/api/status"), running)
    assert client.get("hub/api/user").status_code == 403
    cookies = {c.name for c in client.session.cookies}
    assert not cookies & {"jupyterhub-hub-login", f"jupyterhub-user-{name}"}, cookies


def admin(platform) -> HubClient:
    return logged_in(platform, "admin")


def bound_subject(platform, name: str) -> str:
    user = admin(platform).get(f"hub/api/users/{name}").json()
    return user["auth_state"]["aglais"]["identity"]["subject"]


def test_folded_names_of_other_identities_cannot_take_alices_account(platform):
    alice = logged_in(platform, "alice")
    assert alice.whoami()["name"] == "alice"
    started = alice.start_server()
    assert started.get("ready"), started
    try:
        assert alice.open_server("user/alice/").status_code == 200
        assert alice.get("user/alice/api/status").status_code == 200
        # the probe's two, each a subject of its own
        platform.set_user("ALICE", ["users"])
        platform.set_user("álice", ["users"])
        # and the very same preferred_username at the provider, another subject
        platform.set_user("alice-twin", ["users"], claims={"preferred_username": "alice"})
        for login in ("ALICE", "álice", "alice-twin"):
            assert_no_way_in(refused(platform, login), login, "alice", running=True)
        # alice herself: still hers, in a new session and in the one she had
        assert logged_in(platform, "alice").whoami()["name"] == "alice"
        assert alice.get("user/alice/api/status").status_code == 200
        assert bound_subject(platform, "alice") == "alice"
    finally:
        response = alice.session.delete(
            alice.url("hub/api/users/alice/server"), headers=alice.xsrf_headers()
        )
        assert response.status_code in (202, 204)
        alice.wait_stopped("alice")


def test_names_that_differ_only_in_punctuation_are_one_account_of_one_identity(platform):
    platform.set_user("nina-uni", ["users"])
    platform.set_user("nina@uni", ["users"])
    platform.set_user("Nina Uni", ["users"])
    assert logged_in(platform, "nina-uni").whoami()["name"] == "nina-uni"
    for login in ("nina@uni", "Nina Uni"):
        assert_no_way_in(refused(platform, login), login, "nina-uni")
    assert logged_in(platform, "nina-uni").whoami()["name"] == "nina-uni"


def test_a_name_that_needs_no_folding_is_unaffected(platform):
    platform.set_user("erin", ["users"])
    for _ in range(2):  # the first login binds, the next ones match
        erin = logged_in(platform, "erin")
        assert erin.whoami()["name"] == "erin"
    assert bound_subject(platform, "erin") == "erin"


def test_a_user_an_admin_created_is_bound_at_its_first_login(platform):
    hub_admin = admin(platform)
    created = hub_admin.session.post(
        hub_admin.url("hub/api/users/frida"), headers=hub_admin.xsrf_headers(), timeout=60
    )
    assert created.status_code == 201, created.text
    assert hub_admin.get("hub/api/users/frida").json()["auth_state"] is None
    platform.set_user("Frida", ["users"])
    platform.set_user("frida", ["users"])
    # the first login to arrive takes the account the admin made
    assert logged_in(platform, "Frida").whoami()["name"] == "frida"
    assert bound_subject(platform, "frida") == "Frida"
    assert_no_way_in(refused(platform, "frida"), "frida", "frida")
    assert logged_in(platform, "Frida").whoami()["name"] == "frida"

"""AglaisOAuthenticator as tables: provider claims + config → allowed, admin, tier, groups.

The authenticator is the real class; only the two HTTP calls of the OAuth code
exchange are replaced (the end-to-end tests run them against the real provider).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from tornado import web

from authenticators.aglais import AglaisOAuthenticator
from authenticators.claims import (
    claim_groups,
    login_identity,
    recorded_identity,
    safe_username,
    same_identity,
)

CONFIG = {
    "admin_groups": {"admins"},
    "allowed_groups": {"users", "power"},
    "tier_groups": {"users": "standard", "power": "power", "admins": "standard"},
    "tier_ranks": {"basic": 0, "standard": 10, "power": 20},
    "default_tier": "basic",
}


class ClaimsAuthenticator(AglaisOAuthenticator):
    """The real authenticator, fed a userinfo document instead of a token exchange."""

    user_info: dict = {}

    async def authenticate(self, handler, data=None):
        return await self._token_to_auth_model({"access_token": "token", "scope": "openid"})

    async def token_to_user(self, token_info):
        return self.user_info


ISSUER = "https://id.example.org"


class FakeUser:
    """What the authenticator reads of an existing hub user: its name and auth_state."""

    def __init__(self, name: str, auth_state: dict | None = None, readable: bool = True):
        self.name = name
        self._auth_state = auth_state
        self.encrypted_auth_state = None if auth_state is None and readable else b"sealed"
        self.readable = readable

    async def get_auth_state(self):
        return self._auth_state if self.readable else None  # as JupyterHub does on a bad key


class FakeHub:
    """The hub's side of a login: ``find_user`` (the handler's) and what auth_to_user keeps."""

    def __init__(self, **users: dict | None):
        self.users = {name: FakeUser(name, state) for name, state in users.items()}

    def find_user(self, name: str):
        return self.users.get(name)

    def keep(self, model: dict) -> None:
        self.users[model["name"]] = FakeUser(model["name"], model["auth_state"])


def make_authenticator(**config) -> ClaimsAuthenticator:
    return ClaimsAuthenticator(
        **{"issuer": ISSUER, "client_id": "hub", "client_secret": "s", **CONFIG, **config}
    )


async def login(user_info: dict, hub: FakeHub | None = None, **config) -> dict | None:
    """One login; the userinfo gets a subject derived from its username unless it has one."""
    authenticator = make_authenticator(**config)
    authenticator.user_info = {"sub": f"id-{user_info.get('preferred_username')}", **user_info}
    return await authenticator.get_authenticated_user(hub or FakeHub(), None)


@pytest.mark.parametrize(
    ("user_info", "config", "name", "admin", "tier", "groups"),
    [
        (
            {"preferred_username": "alice", "groups": ["users"]},
            {},
            "alice",
            False,
            "standard",
            ["users"],
        ),
        (
            {"preferred_username": "bob", "groups": ["users", "power"]},
            {},
            "bob",
            False,
            "power",
            ["power", "users"],
        ),
        (
            {"preferred_username": "ada", "groups": ["admins"]},
            {},
            "ada",
            True,
            "standard",
            ["admins"],
        ),
        # one group given as a string
        ({"preferred_username": "carl", "groups": "power"}, {}, "carl", False, "power", ["power"]),
        # a nested groups claim (Keycloak's realm roles)
        (
            {"preferred_username": "dora", "realm_access": {"roles": ["users", "offline"]}},
            {"groups_claim": "realm_access.roles"},
            "dora",
            False,
            "standard",
            ["offline", "users"],
        ),
        # allowed by allow_all, no groups claim at all: default tier, no groups
        ({"preferred_username": "eve"}, {"allow_all": True}, "eve", False, "basic", []),
        # a username made safe: case, accents, spaces and '@'
        (
            {"preferred_username": "Zoë Ångström@Uni.EDU", "groups": ["users"]},
            {},
            "zoe-angstrom-uni.edu",
            False,
            "standard",
            ["users"],
        ),
        # a nested username claim
        (
            {"sub": "x1", "attrs": {"uid": "Frank"}, "groups": ["users"]},
            {"username_claim": "attrs.uid"},
            "frank",
            False,
            "standard",
            ["users"],
        ),
    ],
)
async def test_login_table(user_info, config, name, admin, tier, groups):
    model = await login(user_info, **config)
    assert model is not None
    assert model["name"] == name
    assert bool(model["admin"]) is admin
    ours = model["auth_state"]["aglais"]
    assert (ours["tier"], ours["groups"]) == (tier, groups)
    assert ours["identity"] == {
        "issuer": ISSUER,
        "claim": "sub",
        "subject": model["auth_state"]["oauth_user"]["sub"],
    }
    assert model.get("groups", []) == groups


async def test_the_providers_name_and_email_become_the_users_user_info():
    """The hub keeps them in the user's model (services sign Git commits with them); a
    value that is not one clean line is left out rather than passed on."""
    model = await login(
        {
            "preferred_username": "alice",
            "groups": ["users"],
            "name": " Alice Astronomer ",
            "email": "alice@example.org",
        }
    )
    assert model["user_info"] == {"name": "Alice Astronomer", "email": "alice@example.org"}
    model = await login(
        {"preferred_username": "bob", "groups": ["users"], "name": "Bob\nX", "email": ["b@x"]}
    )
    assert model["user_info"] == {}


@pytest.mark.parametrize(
    ("user_info", "message"),
    [
        # no groups claim and no allow_all: refused, saying so
        ({"preferred_username": "mallory"}, "mallory may not use this hub"),
        ({"preferred_username": "mallory", "groups": []}, "you are in no group"),
        ({"preferred_username": "trent", "groups": ["visitors"]}, "you are in: visitors"),
        # an unusable username claim
        ({"sub": "1234", "groups": ["users"]}, "did not send the 'preferred_username' claim"),
        ({"preferred_username": "!!!", "groups": ["users"]}, "cannot be made into a username"),
        ({"preferred_username": ["a", "b"], "groups": ["users"]}, "cannot be made into a username"),
        # no usable subject: the account could not be bound to anyone
        ({"preferred_username": "sam", "sub": "", "groups": ["users"]}, "did not send the 'sub'"),
        ({"preferred_username": "sam", "sub": None, "groups": ["users"]}, "did not send the 'sub'"),
    ],
)
async def test_refused_logins_say_why(user_info, message):
    with pytest.raises(web.HTTPError) as refused:
        await login(user_info)
    assert refused.value.status_code == 403
    assert message in refused.value.log_message


async def test_refusal_names_the_groups_that_are_allowed():
    with pytest.raises(web.HTTPError) as refused:
        await login({"preferred_username": "mallory", "groups": []})
    assert "admins, power, users" in refused.value.log_message


def test_pkce_groups_and_auth_state_are_on_by_default():
    a = AglaisOAuthenticator(issuer="https://id.example.org")
    assert a.enable_pkce and a.manage_groups and a.enable_auth_state and a.refresh_pre_spawn
    assert a.auth_state_groups_key == "oauth_user.groups"
    assert a.username_claim == "preferred_username"
    assert a.subject_claim == "sub" and a.previous_issuers == []


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("alice", "alice"),
        ("  Bob.Smith ", "bob.smith"),
        ("a/b\\c", "a-b-c"),
        ("_x_", "x"),
        ("ünïcödé", "unicode"),
        ("日本", ""),
        ("", ""),
        (None, ""),
        ("a" * 80, "a" * 63),
    ],
)
def test_safe_username(raw, safe):
    assert safe_username(raw) == safe


def test_claim_groups_ignores_non_strings():
    assert claim_groups({"g": ["a", 3, None, "", "b"]}, "g") == {"a", "b"}
    assert claim_groups({"g": {"a": 1}}, "g") == set()


class _Discovery(BaseHTTPRequestHandler):
    document: dict = {}

    def do_GET(self):
        body = json.dumps(self.document).encode()
        self.send_response(200 if self.path.endswith("openid-configuration") else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def discovery_server():
    server = HTTPServer(("127.0.0.1", 0), _Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_endpoints_come_from_discovery(discovery_server):
    issuer = discovery_server
    _Discovery.document = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/me",
    }
    a = AglaisOAuthenticator(issuer=issuer)
    assert (a.authorize_url, a.token_url, a.userdata_url) == (
        f"{issuer}/auth",
        f"{issuer}/token",
        f"{issuer}/me",
    )


def test_discovery_of_the_wrong_issuer_is_a_clear_503(discovery_server):
    _Discovery.document = {"issuer": "https://elsewhere.example.org"}
    with pytest.raises(web.HTTPError) as failed:
        _ = AglaisOAuthenticator(issuer=discovery_server).authorize_url
    assert failed.value.status_code == 503
    assert "names issuer 'https://elsewhere.example.org'" in failed.value.log_message


def test_unreachable_provider_is_a_clear_503_and_is_retried(discovery_server):
    from aglais_hub.testing.platform import free_port

    a = AglaisOAuthenticator(issuer=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(web.HTTPError) as failed:
        _ = a.token_url
    assert failed.value.status_code == 503
    assert "cannot be reached right now" in failed.value.log_message
    # once the provider answers (here: the issuer is corrected), the next try succeeds
    _Discovery.document = {
        "issuer": discovery_server,
        "authorization_endpoint": "a",
        "token_endpoint": "t",
        "userinfo_endpoint": "u",
    }
    a.issuer = discovery_server
    assert a.token_url == "t"


# -- one account, one identity ----------------------------------------------------------

ALICE = {"issuer": ISSUER, "claim": "sub", "subject": "id-alice"}


def bound(identity: dict = ALICE, **extra) -> dict:
    """An existing hub user's auth_state, bound to ``identity``."""
    return {"aglais": {"tier": "standard", "groups": ["users"], "identity": identity}, **extra}


@pytest.mark.parametrize(
    ("user_info", "identity"),
    [
        ({"sub": "abc"}, {"issuer": ISSUER, "claim": "sub", "subject": "abc"}),
        ({"sub": 1234}, {"issuer": ISSUER, "claim": "sub", "subject": "1234"}),
        ({"sub": True}, None),
        ({"sub": ""}, None),
        ({"sub": ["abc"]}, None),
        ({}, None),
    ],
)
def test_login_identity(user_info, identity):
    assert login_identity(user_info, ISSUER + "/", "sub") == identity


def test_login_identity_of_a_nested_claim():
    assert login_identity({"a": {"oid": "x"}}, ISSUER, "a.oid") == {
        "issuer": ISSUER,
        "claim": "a.oid",
        "subject": "x",
    }


@pytest.mark.parametrize(
    ("auth_state", "identity"),
    [
        (None, None),  # created by an admin, never logged in
        ({}, None),  # cleared by an admin
        ({"aglais": {"tier": "basic"}}, None),
        (bound(), ALICE),
        # from before bindings: bound to its last login's subject, at today's issuer
        ({"oauth_user": {"sub": "id-alice"}, "aglais": {"tier": "basic"}}, ALICE),
        ({"oauth_user": {"preferred_username": "alice"}}, None),
        # a recorded binding wins over the userinfo of the last login
        (bound(oauth_user={"sub": "other"}), ALICE),
    ],
)
def test_recorded_identity(auth_state, identity):
    assert recorded_identity(auth_state, ISSUER, "sub") == identity


@pytest.mark.parametrize(
    ("login", "previous", "same"),
    [
        (ALICE, [], True),
        ({**ALICE, "subject": "id-ALICE"}, [], False),
        ({**ALICE, "claim": "oid"}, [], False),
        ({**ALICE, "issuer": "https://new.example.org"}, [], False),
        ({**ALICE, "issuer": "https://new.example.org"}, [ISSUER + "/"], True),
        ({**ALICE, "issuer": "https://new.example.org", "subject": "x"}, [ISSUER], False),
    ],
)
def test_same_identity(login, previous, same):
    assert same_identity(ALICE, login, previous) is same


@pytest.mark.parametrize(
    "user_info",
    [
        # the probe's two: folded to 'alice', each their own subject
        {"preferred_username": "ALICE", "sub": "id-ALICE"},
        {"preferred_username": "álice", "sub": "id-álice"},
        # the very same username at the provider, another subject
        {"preferred_username": "alice", "sub": "someone-else"},
        # differs only in punctuation or surrounding space
        {"preferred_username": " alice. ", "sub": "id-dot"},
    ],
)
async def test_a_name_bound_to_another_identity_is_refused(user_info):
    hub = FakeHub(alice=bound())
    with pytest.raises(web.HTTPError) as refused:
        await login({**user_info, "groups": ["users"]}, hub)
    assert refused.value.status_code == 403
    message = refused.value.log_message
    assert "The account name 'alice' is already used by another identity" in message
    assert f"you signed in as sub '{user_info['sub']}' of {ISSUER}" in message
    assert "Ask an administrator" in message and "auth.usernameClaim" in message
    assert "id-alice" not in message  # the owner's subject is not shown to the other identity
    assert hub.users["alice"]._auth_state == bound()  # nothing of alice was touched


async def test_punctuation_collisions_are_refused_too():
    hub = FakeHub()
    hub.keep(await login({"preferred_username": "alice-uni", "groups": ["users"]}, hub))
    with pytest.raises(web.HTTPError, match="'alice-uni' is already used"):
        await login({"preferred_username": "alice@uni", "groups": ["users"]}, hub)
    with pytest.raises(web.HTTPError, match="'alice-uni' is already used"):
        await login({"preferred_username": "Alice Uni", "groups": ["users"]}, hub)


async def test_the_bound_identity_logs_in_and_others_are_unaffected():
    hub = FakeHub(alice=bound())
    model = await login({"preferred_username": "alice", "groups": ["users"]}, hub)
    assert model["name"] == "alice" and model["auth_state"]["aglais"]["identity"] == ALICE
    # her own login with another spelling of her name is hers too (same subject)
    model = await login(
        {"preferred_username": "Alice", "sub": "id-alice", "groups": ["users"]}, hub
    )
    assert model["name"] == "alice"
    model = await login({"preferred_username": "bob", "groups": ["users"]}, hub)
    assert model["name"] == "bob"


@pytest.mark.parametrize(
    "auth_state",
    [None, {}, {"aglais": {"tier": "basic"}}],
    ids=["created-by-an-admin", "cleared-by-an-admin", "no-subject-recorded"],
)
async def test_an_unbound_user_is_bound_at_its_next_login(auth_state):
    hub = FakeHub(alice=auth_state)
    model = await login(
        {"preferred_username": "ALICE", "sub": "id-ALICE", "groups": ["users"]}, hub
    )
    assert model["name"] == "alice"
    assert model["auth_state"]["aglais"]["identity"]["subject"] == "id-ALICE"
    hub.keep(model)
    with pytest.raises(web.HTTPError, match="already used by another identity"):
        await login({"preferred_username": "alice", "groups": ["users"]}, hub)


async def test_a_user_from_before_bindings_stays_with_its_last_login():
    hub = FakeHub(alice={"oauth_user": {"sub": "id-alice"}, "aglais": {"tier": "standard"}})
    with pytest.raises(web.HTTPError, match="already used by another identity"):
        await login({"preferred_username": "ALICE", "sub": "id-ALICE", "groups": ["users"]}, hub)
    model = await login({"preferred_username": "alice", "groups": ["users"]}, hub)
    assert model["auth_state"]["aglais"]["identity"] == ALICE  # now recorded


async def test_two_first_logins_of_one_name_in_flight_are_one_identity():
    # the second login is checked before the hub has written the first one's auth_state
    authenticator = make_authenticator()
    hub = FakeHub()
    authenticator.user_info = {
        "preferred_username": "alice",
        "sub": "id-alice",
        "groups": ["users"],
    }
    assert (await authenticator.get_authenticated_user(hub, None))["name"] == "alice"
    authenticator.user_info = {
        "preferred_username": "ALICE",
        "sub": "id-ALICE",
        "groups": ["users"],
    }
    with pytest.raises(web.HTTPError, match="already used by another identity"):
        await authenticator.get_authenticated_user(hub, None)
    authenticator.user_info = {
        "preferred_username": "alice",
        "sub": "id-alice",
        "groups": ["users"],
    }
    assert (await authenticator.get_authenticated_user(hub, None))["name"] == "alice"


async def test_an_unreadable_auth_state_refuses_rather_than_guesses():
    hub = FakeHub()
    hub.users["alice"] = FakeUser("alice", None, readable=False)
    with pytest.raises(web.HTTPError) as refused:
        await login({"preferred_username": "alice", "groups": ["users"]}, hub)
    assert refused.value.status_code == 403
    assert "cannot be decrypted" in refused.value.log_message
    assert "JUPYTERHUB_CRYPT_KEY" in refused.value.log_message


async def test_a_moved_provider_needs_previous_issuers():
    hub = FakeHub(alice=bound())
    moved = {"preferred_username": "alice", "groups": ["users"]}
    with pytest.raises(web.HTTPError) as refused:
        await login(moved, hub, issuer="https://new.example.org")
    assert "AglaisOAuthenticator.previous_issuers" in refused.value.log_message
    model = await login(moved, hub, issuer="https://new.example.org", previous_issuers=[ISSUER])
    assert model["auth_state"]["aglais"]["identity"]["issuer"] == "https://new.example.org"


async def test_another_subject_claim():
    hub = FakeHub()
    info = {"preferred_username": "alice", "oid": "o-1", "groups": ["users"]}
    model = await login(info, hub, subject_claim="oid")
    assert model["auth_state"]["aglais"]["identity"]["subject"] == "o-1"
    hub.keep(model)
    with pytest.raises(web.HTTPError, match="already used by another identity"):
        await login({**info, "oid": "o-2"}, hub, subject_claim="oid")
    with pytest.raises(web.HTTPError, match="did not send the 'oid' claim"):
        await login({"preferred_username": "zed", "groups": ["users"]}, hub, subject_claim="oid")


async def test_login_without_the_hub_to_ask_is_refused():
    authenticator = make_authenticator()
    authenticator.user_info = {"preferred_username": "alice", "sub": "x", "groups": ["users"]}
    with pytest.raises(web.HTTPError) as refused:
        await authenticator.get_authenticated_user(None, None)
    assert refused.value.status_code == 500


@pytest.mark.parametrize(
    ("sub", "refreshed"),
    [("id-alice", True), ("id-ALICE", False)],
)
async def test_refresh_keeps_the_binding_and_never_moves_it(sub, refreshed):
    authenticator = make_authenticator()
    authenticator.user_info = {"preferred_username": "alice", "sub": sub, "groups": ["users"]}
    user = FakeUser("alice", bound(token_response={"access_token": "t"}))
    result = await authenticator.refresh_user(user)
    if refreshed:
        assert result["auth_state"]["aglais"]["identity"] == ALICE
    else:
        assert result is False

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
from authenticators.claims import claim_groups, safe_username

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


async def login(user_info: dict, **config) -> dict | None:
    authenticator = ClaimsAuthenticator(
        issuer="https://id.example.org", client_id="hub", client_secret="s", **{**CONFIG, **config}
    )
    authenticator.user_info = user_info
    return await authenticator.get_authenticated_user(None, None)


@pytest.mark.parametrize(
    ("user_info", "config", "name", "admin", "tier", "groups"),
    [
        ({"preferred_username": "alice", "groups": ["users"]}, {}, "alice", False, "standard", ["users"]),
        ({"preferred_username": "bob", "groups": ["users", "power"]}, {}, "bob", False, "power", ["power", "users"]),
        ({"preferred_username": "ada", "groups": ["admins"]}, {}, "ada", True, "standard", ["admins"]),
        # one group given as a string
        ({"preferred_username": "carl", "groups": "power"}, {}, "carl", False, "power", ["power"]),
        # a nested groups claim (Keycloak's realm roles)
        (
            {"preferred_username": "dora", "realm_access": {"roles": ["users", "offline"]}},
            {"groups_claim": "realm_access.roles"},
            "dora", False, "standard", ["offline", "users"],
        ),
        # allowed by allow_all, no groups claim at all: default tier, no groups
        ({"preferred_username": "eve"}, {"allow_all": True}, "eve", False, "basic", []),
        # a username made safe: case, accents, spaces and '@'
        (
            {"preferred_username": "Zoë Ångström@Uni.EDU", "groups": ["users"]},
            {}, "zoe-angstrom-uni.edu", False, "standard", ["users"],
        ),
        # a nested username claim
        (
            {"sub": "x1", "attrs": {"uid": "Frank"}, "groups": ["users"]},
            {"username_claim": "attrs.uid"}, "frank", False, "standard", ["users"],
        ),
    ],
)  # fmt: skip
async def test_login_table(user_info, config, name, admin, tier, groups):
    model = await login(user_info, **config)
    assert model is not None
    assert model["name"] == name
    assert bool(model["admin"]) is admin
    assert model["auth_state"]["aglais"] == {"tier": tier, "groups": groups}
    assert model.get("groups", []) == groups


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


@pytest.mark.parametrize(
    ("raw", "safe"),
    [("alice", "alice"), ("  Bob.Smith ", "bob.smith"), ("a/b\\c", "a-b-c"), ("_x_", "x"),
     ("ünïcödé", "unicode"), ("日本", ""), ("", ""), (None, ""), ("a" * 80, "a" * 63)],
)  # fmt: skip
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
        f"{issuer}/auth", f"{issuer}/token", f"{issuer}/me",
    )  # fmt: skip


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
        "authorization_endpoint": "a", "token_endpoint": "t", "userinfo_endpoint": "u",
    }  # fmt: skip
    a.issuer = discovery_server
    assert a.token_url == "t"

"""The Git service's pure parts: what a link may hold, how tokens are sealed, where users'
servers are, and how the hub registers the service."""

from __future__ import annotations

import base64
import secrets

import pytest
from jupyterhub.crypto import _validate_key

from aglais_hub.config import apply_defaults
from aglais_hub.gitsync.contents import BadPath, clean_path, server_url
from aglais_hub.gitsync.page import link_form
from aglais_hub.gitsync.rules import (
    branch_problem,
    check_folder,
    check_token,
    check_url,
    link_changes,
    new_link,
)
from aglais_hub.gitsync.settings import servers_url
from aglais_hub.gitsync.vault import KeyMissing, Vault, VaultError, keys_from_environ, raw_key
from aglais_hub.hubconfig import hub_config
from aglais_hub.reservations.rules import Refused

MINIMAL = {
    "auth": {"issuer": "https://id.example.org", "clientId": "hub"},
    "tiers": {"basic": {"rank": 0}},
}
TOKEN = "ghp_" + "A1b2C3" * 6


def refused(fn, *args) -> str:  # noqa: ANN001
    with pytest.raises(Refused) as caught:
        fn(*args)
    assert caught.value.status == 422
    return caught.value.message


# -- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("main", None),
        ("feature/gaia-dr3", None),
        ("v1.2", None),
        ("", "is empty"),
        ("-rf", "may not start with '-'"),
        ("a..b", "may not contain '..'"),
        ("with space", "may not contain spaces"),
        ("a~1", "may not contain '~'"),
        ("a:b", "may not contain ':'"),
        ("x@{1}", "may not contain '@{'"),
        ("/lead", "may not start or end with '/'"),
        ("a//b", "may not contain '//'"),
        ("end.", "may not end with '.'"),
        ("a/.hidden", "may not have a part starting with '.'"),
        ("x.lock", "may not have a part ending in '.lock'"),
        ("HEAD", "may not be 'HEAD'"),
        ("tab\there", "may not contain control characters"),
    ],
)
def test_branch_names_follow_gits_rules(name, problem):
    assert branch_problem(name) == problem


@pytest.mark.parametrize(
    ("folder", "clean"),
    [("", ""), (".", ""), ("notebooks", "notebooks"), ("a/b/", "a/b"), ("./a//b", "a/b")],
)
def test_folders_are_kept_relative_and_tidy(folder, clean):
    assert check_folder(folder) == clean


@pytest.mark.parametrize(
    ("folder", "words"),
    [
        ("../up", "'folder' may not contain '..'"),
        ("a/../../b", "'folder' may not contain '..'"),
        ("/etc", "no leading '/'"),
        ("a\\b", "with '/', not '\\'"),
        (".git/hooks", "inside .git"),
        ("a\nb", "control characters"),
    ],
)
def test_folders_leaving_the_repository_are_refused(folder, words):
    assert words in refused(check_folder, folder)


def test_urls_with_credentials_are_refused_without_repeating_them():
    message = refused(check_url, f"https://alice:{TOKEN}@github.com/org/repo.git")
    assert message.startswith("'url':") and "user name or token" in message
    assert TOKEN not in message and "alice" not in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://github.com/org/repo.git", "plain http://"),
        ("ssh://git:secret@github.com/org/repo.git", "contains a password"),
        ("file:///srv/repo", "Only https://"),
        ("https://github.com/org/repo.git?private_token=x", "'?' query"),
        (42, "'url' must be the repository's HTTPS or SSH URL"),
    ],
)
def test_urls_other_than_https_are_refused_naming_the_field(url, words):
    message = refused(check_url, url)
    assert message.startswith("'url'") and words in message


def test_http_is_accepted_for_this_machine_only():
    assert check_url("http://127.0.0.1:9418/org/repo.git") == "http://127.0.0.1:9418/org/repo.git"
    assert check_url("http://localhost/r.git") == "http://localhost/r.git"


def test_a_token_is_one_line_and_never_quoted():
    assert check_token(f"  {TOKEN}\n") == TOKEN
    for bad in ("", "   ", f"{TOKEN} {TOKEN}", f"{TOKEN}\x00", 7):
        message = refused(check_token, bad)
        assert message.startswith("'token'") and TOKEN not in message


def test_a_new_link_needs_url_branch_and_token_and_nothing_unknown():
    good = {"url": "https://example.org/r.git", "branch": "main", "token": TOKEN}
    link = new_link(good)
    assert (link.folder, link.username, link.strip_outputs) == ("", None, False)
    assert TOKEN not in repr(link)
    for field in ("url", "branch", "token"):
        assert refused(new_link, {k: v for k, v in good.items() if k != field}) == (
            f"'{field}' is missing."
        )
    assert "Unknown field(s): 'colour'" in refused(new_link, {**good, "colour": "red"})
    assert "'strip_outputs' must be true or false" in refused(
        new_link, {**good, "strip_outputs": "yes"}
    )
    assert "'username' may not contain ':'" in refused(new_link, {**good, "username": "a:b"})


def test_a_change_cannot_move_the_link_to_another_repository():
    assert link_changes({"branch": "dev", "token": TOKEN}) == {"branch": "dev", "token": TOKEN}
    assert "'url' cannot be changed" in refused(link_changes, {"url": "https://x.org/r.git"})
    assert "at least one of" in refused(link_changes, {})


def test_the_pages_form_becomes_an_api_body():
    fields = {"url": "u", "branch": "b", "folder": "", "username": "", "token": "t"}
    assert link_form(fields, True) == {
        "url": "u",
        "branch": "b",
        "token": "t",
        "strip_outputs": True,
    }


# -- the vault -------------------------------------------------------------------------------


def test_keys_are_read_as_jupyterhub_reads_its_crypt_key():
    raw = secrets.token_bytes(32)
    for text in (raw.hex(), base64.urlsafe_b64encode(raw).decode()):
        assert raw_key(text) == _validate_key(text) == raw
    with pytest.raises(ValueError, match="32 bytes"):
        raw_key("too-short")


def test_the_services_own_key_wins_and_the_hubs_is_the_fallback():
    own, hub = secrets.token_hex(32), secrets.token_hex(32)
    assert keys_from_environ({"AGLAIS_GITSYNC_KEY": own, "JUPYTERHUB_CRYPT_KEY": hub}) == [
        bytes.fromhex(own)
    ]
    assert keys_from_environ({"JUPYTERHUB_CRYPT_KEY": f"{hub};{own}"}) == [
        bytes.fromhex(hub),
        bytes.fromhex(own),
    ]
    with pytest.raises(KeyMissing, match="AGLAIS_GITSYNC_KEY .* JUPYTERHUB_CRYPT_KEY"):
        keys_from_environ({"JUPYTERHUB_CRYPT_KEY": " ; "})
    with pytest.raises(VaultError, match="AGLAIS_GITSYNC_KEY holds a malformed key") as caught:
        keys_from_environ({"AGLAIS_GITSYNC_KEY": "s3cret-but-short"})
    assert "s3cret" not in str(caught.value)


def test_a_sealed_token_opens_for_its_owner_with_any_of_the_keys_only():
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    sealed = Vault([old]).seal(TOKEN, "alice")
    assert TOKEN not in sealed and "alice" not in sealed
    rotated = Vault([new, old])  # the new key first: it seals, both open
    assert rotated.open(sealed, "alice") == TOKEN
    assert Vault([new]).open(rotated.reseal(sealed), "alice") == TOKEN
    with pytest.raises(VaultError, match="another user"):
        rotated.open(sealed, "mallory")
    with pytest.raises(VaultError, match="cannot be decrypted"):
        Vault([new]).open(sealed, "alice")
    assert "keys hidden" in repr(rotated)


# -- where servers are, and the hub's side -----------------------------------------------------


def test_users_servers_are_under_the_proxy_and_the_base_url():
    values = apply_defaults(MINIMAL)
    assert servers_url(values) == "http://127.0.0.1:8000/"
    values["hub"].update(publicUrl="https://hub.example.org", baseUrl="/aglais/")
    assert servers_url(values) == "https://hub.example.org/aglais/"
    values["gitsync"]["serversUrl"] = "http://proxy-public"
    assert servers_url(values) == "http://proxy-public/aglais/"
    assert server_url("http://h/aglais/", "ann.lee", "lab") == "http://h/aglais/user/ann.lee/lab/"
    assert server_url("http://h/", "a b") == "http://h/user/a%20b/"


def test_paths_in_a_server_stay_inside_it():
    assert clean_path("./a//b/") == "a/b" and clean_path("") == ""
    for bad in ("/etc/passwd", "a/../../x", "a\\b", "a\x00"):
        with pytest.raises(BadPath):
            clean_path(bad)


def test_the_hub_shows_the_service_and_gives_it_no_role_of_its_own():
    values = apply_defaults({**MINIMAL, "gitsync": {"enabled": True, "port": 9191}})
    key = secrets.token_hex(32)
    c = hub_config(values, {"JUPYTERHUB_CRYPT_KEY": key, "AGLAIS_VALUES": "/v.yaml"})
    service = next(s for s in c.JupyterHub.services if s["name"] == "gitsync")
    assert service["display"] and service["oauth_no_confirm"]
    assert service["url"] == "http://127.0.0.1:9191"
    assert service["oauth_client_allowed_scopes"] == ["access:servers!user"]
    assert service["environment"] == {"AGLAIS_VALUES": "/v.yaml", "AGLAIS_GITSYNC_KEY": key}
    assert "access:services!service=gitsync" in c.JupyterHub.extra_user_scopes
    assert not any("gitsync" in role.get("services", []) for role in c.JupyterHub.load_roles)
    off = hub_config(apply_defaults(MINIMAL), {})
    assert not any(s["name"] == "gitsync" for s in off.JupyterHub.services)

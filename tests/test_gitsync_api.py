"""The Git service through a real hub and its real managed service: linking repositories,
who may see and remove which link, refused fields, where a token may never appear (the
database in clear, the logs, the page), and reaching the user's own JupyterLab with the
user's own login. Users log in with JupyterHub's dummy authenticator; tokens are real hub
API tokens and real hub OAuth logins.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aglais_hub.gitsync.app import make_app
from aglais_hub.gitsync.contents import (
    ContentsClient,
    ContentsNotFound,
    NotAFolder,
    NotAllowed,
    ServerNotRunning,
)
from aglais_hub.gitsync.vault import Vault, keys_from_environ
from aglais_hub.testing.gitsynchub import GitsyncHub
from aglais_hub.testing.hubclient import forms_of
from aglais_hub.testing.platform import port_open

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = "https://git.example.org/astro/notebooks.git"
START_FIRST = "start your server first"
NOTEBOOK = {
    "cells": [{"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": []}],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitsyncHub]:
    with GitsyncHub(tmp_path_factory.mktemp("gitsync")) as running:
        yield running
    leftover = [p for p in (running.port, running.service_port) if port_open(p)]
    assert not leftover, f"ports still open after the hub stopped: {leftover}"


@pytest.fixture(scope="module")
def tokens(hub: GitsyncHub) -> dict[str, str]:
    return {name: hub.add_user(name) for name in ("alice", "bob", "admin")}


class Api:
    def __init__(self, hub: GitsyncHub, session: requests.Session):
        self.base = hub.service_url + "api/"
        self.session = session

    def __getattr__(self, method: str):  # get, post, patch, delete
        call = getattr(self.session, method)
        return lambda path, **kw: call(self.base + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def alice(hub, tokens) -> Api:
    return Api(hub, hub.client(tokens["alice"]))


@pytest.fixture(scope="module")
def bob(hub, tokens) -> Api:
    return Api(hub, hub.client(tokens["bob"]))


@pytest.fixture(scope="module")
def admin(hub, tokens) -> Api:
    return Api(hub, hub.client(tokens["admin"]))


def a_token() -> str:
    """A token no other test uses, so finding it anywhere is this test's leak."""
    return f"glpat-{secrets.token_hex(12)}"


def link(api: Api, **fields: object) -> requests.Response:
    body = {"url": REPO, "branch": "main", "folder": f"f{secrets.token_hex(3)}"}
    return api.post("links", json={**body, "token": a_token(), **fields})


def test_without_a_login_the_api_is_401_and_health_is_open(hub: GitsyncHub) -> None:
    assert requests.get(hub.service_url + "api/health").json() == {"status": "ok"}
    for path in ("links", "links/1", "server"):
        response = requests.get(hub.service_url + "api/" + path)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"]
        assert "token" in response.json()["message"]
    bad = requests.get(hub.service_url + "api/links", headers={"Authorization": "token nope"})
    assert bad.status_code == 401


def test_alice_links_a_repository_and_never_sees_the_token_again(alice: Api) -> None:
    token = a_token()
    created = alice.post(
        "links", json={"url": REPO, "branch": "dev", "folder": "gaia/", "token": token}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert token not in created.text and "token" not in body
    assert body["has_token"] is True and body["user"] == "alice"
    assert (body["branch"], body["folder"], body["strip_outputs"]) == ("dev", "gaia", False)
    assert created.headers["Location"].endswith(f"/api/links/{body['id']}")
    assert body in alice.get("links").json()["links"]
    assert alice.get(f"links/{body['id']}").json() == body


def test_another_user_gets_404_on_every_method(alice: Api, bob: Api) -> None:
    mine = link(alice).json()
    for response in (
        bob.get(f"links/{mine['id']}"),
        bob.patch(f"links/{mine['id']}", json={"branch": "x"}),
        bob.patch(f"links/{mine['id']}", json={"url": "not even valid"}),
        bob.delete(f"links/{mine['id']}"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["message"] == f"You have no link {mine['id']}."
    assert alice.get(f"links/{mine['id']}").json() == mine  # nothing changed, nothing gone
    assert mine["id"] not in [x["id"] for x in bob.get("links").json()["links"]]
    assert bob.get("links", params={"user": "alice"}).status_code == 403
    assert bob.get("links/99999999999").status_code == 404


def test_admins_list_everyones_links_and_remove_them_but_do_not_change_them(
    alice: Api, bob: Api, admin: Api
) -> None:
    alices, bobs = link(alice).json(), link(bob).json()
    everyone = [x["id"] for x in admin.get("links").json()["links"]]
    assert {alices["id"], bobs["id"]} <= set(everyone)
    only = admin.get("links", params={"user": "alice"}).json()["links"]
    assert alices["id"] in [x["id"] for x in only] and {x["user"] for x in only} == {"alice"}
    assert admin.get(f"links/{alices['id']}").json() == alices
    assert admin.patch(f"links/{alices['id']}", json={"branch": "x"}).status_code == 403
    removed = admin.delete(f"links/{alices['id']}")
    assert removed.status_code == 200 and removed.json()["id"] == alices["id"]
    assert alice.get(f"links/{alices['id']}").status_code == 404


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"url": "https://astro:SECRET123@git.example.org/r.git"}, "url", "user name or token"),
        ({"url": "http://git.example.org/r.git"}, "url", "plain http://"),
        ({"url": "ftp://git.example.org/r.git"}, "url", "Only https://"),
        ({"branch": "a..b"}, "branch", "may not contain '..'"),
        ({"branch": "my branch"}, "branch", "may not contain spaces"),
        ({"branch": "-f"}, "branch", "may not start with '-'"),
        ({"folder": "../elsewhere"}, "folder", "may not contain '..'"),
        ({"folder": "/abs"}, "folder", "no leading '/'"),
        ({"token": ""}, "token", "personal access token"),
        ({"strip_outputs": "yes"}, "strip_outputs", "true or false"),
    ],
)
def test_a_bad_field_is_422_naming_it(alice: Api, fields: dict, field: str, words: str) -> None:
    response = link(alice, **fields)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"'{field}'") and words in message
    assert "SECRET123" not in message


def test_a_change_replaces_the_token_and_moves_branch_or_folder(alice: Api) -> None:
    mine = link(alice).json()
    new = a_token()
    changed = alice.patch(f"links/{mine['id']}", json={"token": new, "strip_outputs": True})
    assert changed.status_code == 200 and new not in changed.text
    assert changed.json()["strip_outputs"] is True and changed.json()["has_token"]
    refused = alice.patch(f"links/{mine['id']}", json={"url": REPO})
    assert refused.status_code == 422 and "'url' cannot be changed" in refused.json()["message"]
    assert alice.patch(f"links/{mine['id']}", json={"branch": "a b"}).status_code == 422
    twice = alice.post("links", json={"url": REPO, "branch": "main", "token": "t"})
    again = alice.post("links", json={"url": REPO, "branch": "main", "token": "t"})
    assert twice.status_code == 201 and again.status_code == 409
    assert f"Link {twice.json()['id']} already links" in again.json()["message"]


def test_bodies_the_api_will_not_read(alice: Api) -> None:
    huge = alice.post("links", data=b"{" + b" " * 70_000 + b"}", headers=JSON)
    assert huge.status_code == 413 and huge.json()["status"] == 413
    form = alice.post("links", data="url=x", headers=FORM)
    assert form.status_code == 415
    assert alice.post("links", data="[1]", headers=JSON).status_code == 422
    assert alice.put("links").headers["Allow"] == "GET, POST"
    assert alice.get("nope").status_code == 404


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_the_token_never_appears_in_clear_in_the_database_the_log_or_the_page(
    hub: GitsyncHub, alice: Api
) -> None:
    by_api = a_token()
    made = alice.post("links", json={"url": REPO, "branch": "leak", "token": by_api}).json()
    browser = hub.browser("alice")
    page = browser.get(hub.service_url)
    form = next(f for f in forms_of(page.text) if f["fields"].get("action") == "add")
    by_page, by_bad_form = a_token(), a_token()
    fields = {**form["fields"], "url": REPO, "branch": "from-page", "token": by_page}
    added = browser.post(hub.service_url, data=fields, timeout=30)
    assert added.status_code == 200 and "Linked:" in added.text
    bad = {**fields, "branch": "no..good", "token": by_bad_form}
    refused = browser.post(hub.service_url, data=bad, timeout=30)
    assert refused.status_code == 422
    assert "'branch' may not contain '..'" in html.unescape(refused.text)
    secrets_sent = (by_api, by_page, by_bad_form)
    for shown in (page.text, added.text, refused.text, browser.get(hub.service_url).text):
        assert not any(s in shown for s in secrets_sent)
    assert re.search(r'<input[^>]*type="password"[^>]*name="token"', added.text)
    assert not re.search(r'name="token"[^>]*value=', added.text + refused.text)
    # the database holds them sealed with the service's key, never in clear
    stored = b"".join(path.read_bytes() for path in hub.db_files)
    assert stored and not any(s.encode() in stored for s in secrets_sent)
    vault = Vault(keys_from_environ({"AGLAIS_GITSYNC_KEY": hub.key}))
    with sqlite3.connect(hub.workdir / "gitsync.sqlite") as db:
        rows = dict(db.execute("SELECT branch, token_sealed FROM links WHERE user = 'alice'"))
    assert vault.open(rows["leak"], "alice") == by_api
    assert vault.open(rows["from-page"], "alice") == by_page
    assert "no..good" not in rows
    log = hub.log_file.read_text(errors="replace")
    assert f"linked {REPO}, branch leak (link {made['id']})" in log  # the service does log
    assert not any(s in log for s in secrets_sent)


def test_an_ssh_link_gets_a_deploy_key_whose_public_half_is_shown(
    hub: GitsyncHub, alice: Api
) -> None:
    ssh = "git@git.example.org:astro/notebooks.git"
    with_token = alice.post("links", json={"url": ssh, "branch": "main", "token": a_token()})
    assert with_token.status_code == 422
    assert with_token.json()["message"].startswith("'token' is not used with an SSH URL")
    no_token = alice.post("links", json={"url": REPO, "branch": "ssh-test"})
    assert (no_token.status_code, no_token.json()["message"]) == (422, "'token' is missing.")
    created = alice.post("links", json={"url": ssh, "branch": "main", "folder": "ssh"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["has_token"] is False and body["url"] == ssh
    assert re.fullmatch(
        rf"ssh-ed25519 AAAA[A-Za-z0-9+/=]+ aglais-hub alice link {body['id']}", body["public_key"]
    )
    assert "PRIVATE" not in created.text
    assert alice.patch(f"links/{body['id']}", json={"token": a_token()}).status_code == 422
    # the link's page shows the public half and says what to do with it
    browser = hub.browser("alice")
    view = html.unescape(browser.get(hub.service_url, params={"link": body["id"]}).text)
    assert body["public_key"] in view and "deploy key with write access" in view
    assert "PRIVATE" not in view
    # the database holds the private half sealed only
    stored = b"".join(path.read_bytes() for path in hub.db_files)
    assert body["public_key"].split()[1].encode() in stored and b"PRIVATE KEY" not in stored
    assert alice.delete(f"links/{body['id']}").status_code in (200, 204)


def test_the_page_is_in_the_hubs_look_and_removes_a_link(hub: GitsyncHub) -> None:
    browser = hub.browser("bob")
    home = browser.get(hub.url + "/hub/home", timeout=30).text
    assert 'href="/services/gitsync/"' in home  # in the hub's Services menu
    page = browser.get(hub.service_url)
    assert page.status_code == 200 and "<title>Git repositories" in page.text
    assert "/hub/logout" in page.text and 'id="link-form"' in page.text
    form = next(f for f in forms_of(page.text) if f["fields"].get("action") == "add")
    fields = {**form["fields"], "url": REPO, "branch": "page", "token": a_token()}
    added = browser.post(hub.service_url, data=fields, timeout=30)
    link_id = re.search(r'data-link="(\d+)"', added.text).group(1)
    remove = next(f for f in forms_of(added.text) if f["fields"].get("id") == link_id)
    removed = browser.post(hub.service_url, data=remove["fields"], timeout=30)
    assert f"Link {link_id} is removed" in removed.text
    assert f'data-link="{link_id}"' not in removed.text
    no_xsrf = {k: v for k, v in fields.items() if k != "_xsrf"}
    assert browser.post(hub.service_url, data=no_xsrf, timeout=30).status_code == 403
    assert "Everyone's repositories" not in html.unescape(page.text)
    as_admin = hub.browser("admin").get(hub.service_url).text  # admin by its OAuth login
    assert "Everyone's repositories" in html.unescape(as_admin)


def test_the_openapi_document_lists_every_route(hub: GitsyncHub) -> None:
    spec = requests.get(hub.service_url + "api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert spec["servers"] == [{"url": "/services/gitsync/"}]
    app = make_app(None, "/services/gitsync/", b"x")
    routes = set()
    for rule in app.wildcard_router.rules:
        path = rule.matcher.regex.pattern.rstrip("$").removeprefix("/services/gitsync")
        if path.startswith("/api") and path != "/api/.*":
            routes.add(re.sub(r"\(\\d\+\)", "{id}", path))
    assert routes == set(spec["paths"])


# -- the user's own server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice_server(hub: GitsyncHub, tokens: dict) -> str:
    """alice's default server (JupyterLab), running; its folder on disk."""
    hub.start_server("alice")
    return hub.values["spawner"]["localSpark"]["dataDir"] + "/users/alice"


def test_the_service_reaches_the_users_server_with_their_own_login(
    hub: GitsyncHub, alice: Api, alice_server: str
) -> None:
    assert alice.get("server").json()["reachable"] is True  # alice's API token
    browser = Api(hub, hub.browser("alice"))  # alice's OAuth login (the cookie)
    assert browser.get("server").json() == {
        "user": "alice",
        "server": "",
        "label": "your default server",
        "reachable": True,
        "items": browser.get("server").json()["items"],
    }
    narrow = Api(hub, hub.client(hub.add_user("alice", ["access:services!service=gitsync"])))
    refused = narrow.get("server")
    assert refused.status_code == 403 and "access:servers" in refused.json()["message"]
    assert alice.get("server", params={"server": "Bad_Name"}).status_code == 422


def test_a_server_that_is_not_running_is_409_start_your_server_first(
    hub: GitsyncHub, bob: Api, tokens: dict
) -> None:
    response = bob.get("server")
    assert response.status_code == 409 and START_FIRST in response.json()["message"]
    stopped = ContentsClient(hub.url, "bob", tokens["bob"])
    for call in (stopped.list(""), stopped.put_notebook("n.ipynb", NOTEBOOK)):
        with pytest.raises(ServerNotRunning, match=START_FIRST):
            asyncio.run(call)


def test_notebooks_are_written_read_and_listed_in_the_users_server(
    hub: GitsyncHub, tokens: dict, alice_server: str
) -> None:
    async def scenario() -> None:
        server = ContentsClient(hub.url, "alice", tokens["alice"])
        await server.ensure_dir("gaia/dr3")
        await server.ensure_dir("gaia/dr3")  # already there: nothing to do
        saved = await server.put_notebook("gaia/dr3/hr.ipynb", NOTEBOOK)
        on_disk = Path(alice_server, "gaia/dr3/hr.ipynb").read_bytes()
        assert saved.sha256 == hashlib.sha256(on_disk).hexdigest()
        read = await server.get_notebook("gaia/dr3/hr.ipynb")
        assert read.content["cells"][0]["source"] == "1 + 1" and read.sha256 == saved.sha256
        assert [(e.name, e.type) for e in await server.list("gaia/dr3")] == [
            ("hr.ipynb", "notebook")
        ]
        assert ("gaia", "directory") in [(e.name, e.type) for e in await server.list("")]
        with pytest.raises(NotAFolder):
            await server.ensure_dir("gaia/dr3/hr.ipynb/deeper")
        with pytest.raises(ContentsNotFound):
            await server.get_notebook("gaia/none.ipynb")
        intruder = ContentsClient(hub.url, "alice", tokens["bob"])  # bob's token, alice's server
        with pytest.raises(NotAllowed):
            await intruder.list("")

    asyncio.run(scenario())


def test_without_a_key_serve_exits_with_a_clear_message(hub: GitsyncHub) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AGLAIS_GITSYNC_KEY", "JUPYTERHUB_CRYPT_KEY")
    }
    command = [sys.executable, "-m", "aglais_hub.cli", "gitsync", "--values"]
    done = subprocess.run(
        [*command, str(hub.values_file), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "has no key" in done.stderr and "AGLAIS_GITSYNC_KEY" in done.stderr
    assert "JUPYTERHUB_CRYPT_KEY" in done.stderr
    malformed = subprocess.run(
        [*command, str(hub.values_file), "serve"],
        env={**env, "AGLAIS_GITSYNC_KEY": "hunter2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert malformed.returncode == 2 and "AGLAIS_GITSYNC_KEY holds a malformed key" in (
        malformed.stderr
    )
    assert "hunter2" not in malformed.stderr


def test_a_stored_token_no_key_opens_is_409_enter_it_again_on_every_git_route(
    hub: GitsyncHub, alice: Api
) -> None:
    """The service's key was changed without keeping the old one: listing, importing and
    committing on the link say to enter the token again (409), never a 500; a PATCH with
    a new token mends the link."""
    made = link(alice).json()
    stranger = Vault([secrets.token_bytes(32)]).seal(a_token(), "alice")
    with sqlite3.connect(hub.workdir / "gitsync.sqlite") as db:
        db.execute("UPDATE links SET token_sealed = ? WHERE id = ?", (stranger, made["id"]))
    where = f"links/{made['id']}"
    answers = {
        "notebooks": alice.get(f"{where}/notebooks"),
        "import": alice.post(f"{where}/import", json={"paths": ["a.ipynb"]}),
        # in her server, the repository's notebooks are in a folder named after it
        "commit": alice.post(
            f"{where}/commit", json={"paths": ["notebooks/a.ipynb"], "message": "m"}
        ),
    }
    for route, answer in answers.items():
        assert answer.status_code == 409, (route, answer.status_code, answer.text)
        assert "Enter the token again" in answer.json()["message"], (route, answer.text)
    mended = alice.patch(where, json={"token": a_token()})
    assert mended.status_code == 200, mended.text
    with sqlite3.connect(hub.workdir / "gitsync.sqlite") as db:
        (sealed,) = db.execute(
            "SELECT token_sealed FROM links WHERE id = ?", (made["id"],)
        ).fetchone()
    assert sealed != stranger
    Vault(keys_from_environ({"AGLAIS_GITSYNC_KEY": hub.key})).open(sealed, "alice")

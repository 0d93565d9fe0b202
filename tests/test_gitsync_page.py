"""The Git service's page: the whole flow in a real browser, and the page's pure helpers.

Headless Chromium (Debian's, under Playwright) against the whole demo platform (the
real provider, hub, proxy and JupyterLab) and a real Git server: alice logs in through
the provider's pages, starts her server from the hub's spawn page, links a repository
on the page, opens the link, imports a notebook, finds it in JupyterLab's file browser,
changes it, and commits it from the page; the branch moving meanwhile offers "Pull and
retry", and a conflict is a warning naming the branch her version was saved on. The
token she typed is in no page the browser was shown. Each step's screenshot is kept in
the test's tmp dir (``<basetemp>/<test>/shots/NN-step.png``).

Then what others see (plain HTTP through the same platform): bob gets a 404 for her
link and "start your server first" for his own; an admin sees hers but may not use it.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from aglais_hub.gitsync.contents import ContentsNotFound, Entry, ServerNotRunning
from aglais_hub.gitsync.errors import (
    CredentialUnreadable,
    MergeConflict,
    PushRejected,
    RepositoryNotFound,
)
from aglais_hub.gitsync.git import NotebookEntry
from aglais_hub.gitsync.models import ImportRecord, Link
from aglais_hub.gitsync.page import (
    alert_of,
    commit_message,
    notebook_rows,
    server_notebooks,
    status_of,
    ticked,
)
from aglais_hub.gitsync.vault import VaultError
from aglais_hub.reservations.rules import Refused
from aglais_hub.testing.gitserver import GitServer, notebook
from aglais_hub.testing.hubclient import HubClient, forms_of
from aglais_hub.testing.platform import Platform

TOKEN = "ghp_" + secrets.token_hex(16)  # alice's token at the Git server
BOB_TOKEN = "ghp_" + secrets.token_hex(16)  # bob's
HR = "notebooks/hr-diagram.ipynb"
SKY = "notebooks/sky-counts.ipynb"
TARGET = "gaia-notes/" + HR
ALICE = ("Alice Astronomer", "alice@example.org")  # the demo provider's claims for alice
WAIT = 180_000  # ms: a server start, a clone


# -- the pure helpers -----------------------------------------------------------------------


def a_link(folder: str = "") -> Link:
    now = datetime.now(UTC)
    url = "https://git.example.org/alice/gaia-notes.git"
    return Link(id=1, user="alice", url=url, branch="main", folder=folder, created_at=now, updated_at=now)  # fmt: skip


def test_ticked_keeps_the_order_drops_blanks_and_repeats_and_refuses_none_or_too_many():
    assert ticked(["b.ipynb", " a.ipynb ", "", "b.ipynb"], "import") == ["b.ipynb", "a.ipynb"]
    with pytest.raises(Refused, match="Tick at least one notebook to commit") as none:
        ticked(["", "  "], "commit")
    assert none.value.status == 422
    with pytest.raises(Refused, match="at most 200"):
        ticked([f"n{i}.ipynb" for i in range(201)], "import")


def test_a_commit_message_must_say_something_and_not_too_much():
    assert commit_message("Smaller dots\n\nand a title") == "Smaller dots\n\nand a title"
    for bad in ("", " \n ", "x" * 10_001):
        with pytest.raises(Refused) as refused:
            commit_message(bad)
        assert refused.value.status == 422


def test_notebook_rows_say_where_each_goes_and_whether_it_changed_since_its_import():
    link = a_link(folder="notebooks")
    entries = [NotebookEntry(p, b, 10, "jupyter") for p, b in ((HR, "b2"), (SKY, "s1"), ("notebooks/new.ipynb", "n1"))]  # fmt: skip
    records = [
        ImportRecord(repo_path=HR, blob_id="b1", written_to="gaia-notes/hr-diagram.ipynb"),
        ImportRecord(repo_path=SKY, blob_id="s1", written_to="gaia-notes/sky-counts.ipynb"),
    ]
    rows = notebook_rows(entries, records, link)
    assert [(r["target"], r["imported"], r["changed"], r["state"]) for r in rows] == [
        ("gaia-notes/hr-diagram.ipynb", True, True, "imported; changed in the repository since"),
        ("gaia-notes/sky-counts.ipynb", True, False, "imported; unchanged in the repository since"),
        ("gaia-notes/new.ipynb", False, False, "not imported yet"),
    ]


def test_every_error_becomes_words_with_the_apis_status():
    stopped = ServerNotRunning("Your default server is not running: start your server first.")
    conflict = MergeConflict("Your version is saved on the branch 'aglais/alice/1'.", "u", "aglais/alice/1", [HR])  # fmt: skip
    cases = [
        (stopped, 409, "danger", True),
        (PushRejected("'main' has changed since your last pull", "u"), 409, "danger", False),
        (conflict, 409, "warning", False),
        (RepositoryNotFound("There is no repository at u", "u"), 404, "danger", False),
        (Refused(403, "Administrators may list and remove"), 403, "danger", False),
        (VaultError("The stored token cannot be opened."), 409, "danger", False),
        (CredentialUnreadable("The stored token cannot be opened.", "u"), 409, "danger", False),
    ]
    for error, status, kind, start in cases:
        alert = alert_of(error)
        assert (status_of(error), alert["kind"], alert["start"]) == (status, kind, start)
        assert str(error) in alert["message"]
        if isinstance(error, VaultError | CredentialUnreadable):
            assert "Remove the link and add it again" in alert["message"]
    surprise = alert_of(RuntimeError(f"token {TOKEN}"))
    assert TOKEN not in surprise["message"] and "logged" in surprise["message"]
    assert status_of(RuntimeError()) == 500


class FakeServer:
    """A contents API over a dict of folder → entries; counts its calls."""

    def __init__(self, tree: dict[str, list[Entry]]):
        self.tree, self.calls = tree, 0

    async def list(self, path: str) -> list[Entry]:
        self.calls += 1
        if path not in self.tree:
            raise ContentsNotFound(f"There is no {path!r}.")
        return self.tree[path]


def entry(path: str, kind: str = "notebook") -> Entry:
    return Entry(path.rsplit("/", 1)[-1], path, kind, "")


async def test_server_notebooks_lists_ipynb_files_in_every_subfolder_but_hidden_ones():
    server = FakeServer(
        {
            "gaia-notes": [
                entry("gaia-notes/notebooks", "directory"),
                entry("gaia-notes/.ipynb_checkpoints", "directory"),
                entry("gaia-notes/README.md", "file"),
                entry("gaia-notes/top.ipynb"),
            ],
            "gaia-notes/notebooks": [
                entry("gaia-notes/notebooks/hr.ipynb"),
                entry("gaia-notes/notebooks/gone", "directory"),
            ],
        }
    )
    assert await server_notebooks(server, "gaia-notes") == (
        ["gaia-notes/notebooks/hr.ipynb", "gaia-notes/top.ipynb"],
        True,
    )
    assert await server_notebooks(FakeServer({}), "gaia-notes") == ([], True)
    deep = FakeServer({f"d{i}": [entry(f"d{i + 1}", "directory")] for i in range(300)})
    assert await server_notebooks(deep, "d0") == ([], False) and deep.calls == 200


# -- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def git() -> Iterator[GitServer]:
    with GitServer({"alice-git": TOKEN, "bob-git": BOB_TOKEN}) as server:
        server.create_repo("gaia-notes")
        yield server


@pytest.fixture(scope="module")
def platform(jupyterlab_platform: Platform) -> Platform:
    return jupyterlab_platform


@pytest.fixture(scope="module")
def seen() -> list[str]:
    """Every page's HTML the browser was shown, to search for the token."""
    return []


@pytest.fixture(scope="module")
def context(browser, platform: Platform) -> Iterator:
    """alice's browser (one cookie jar for the module's browser tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    try:
        yield context
    finally:
        context.close()


class Steps:
    """A page whose every step is screenshot (``NN-name.png``) and kept in ``seen``."""

    def __init__(self, page, folder: Path, seen: list[str]):
        self.page, self.folder, self.seen, self.n = page, folder, seen, 0
        folder.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True)
        self.seen.append(self.page.content())


def contents_call(context, platform: Platform, method: str, path: str, body: dict | None = None):
    """alice's JupyterLab contents API with the browser's own cookies (and the server's
    XSRF cookie as its header, as JupyterLab sends it)."""
    url = platform.url + "user/alice/api/contents/" + path
    xsrf = [c["value"] for c in context.cookies(url) if c["name"] == "_xsrf"]
    headers = {"X-XSRFToken": xsrf[-1]} if xsrf else {}
    headers["Origin"] = platform.url.rstrip("/")
    kwargs = {"data": json.dumps(body), "headers": {**headers, "Content-Type": "application/json"}} if body else {"headers": headers}  # fmt: skip
    response = context.request.fetch(url, method=method, **kwargs)
    assert response.ok, (method, path, response.status, response.text()[:300])
    return response.json()


def edit_in_server(context, platform: Platform, line: int, source: str) -> None:
    content = contents_call(context, platform, "GET", TARGET)["content"]
    content["cells"][line]["source"] = source
    body = {"type": "notebook", "format": "json", "content": content}
    contents_call(context, platform, "PUT", TARGET, body)


def open_link(page, platform: Platform, link_id: str) -> None:
    page.goto(f"{platform.gitsync_url}?link={link_id}")
    page.wait_for_selector("#aglais-gitsync-link", timeout=WAIT)


def commit(page, target: str, message: str) -> None:
    page.check(f'#server-notebooks input[value="{target}"]')
    page.fill("#message", message)
    page.click("#commit")
    page.wait_for_selector("#notice, #error, #conflict", timeout=WAIT)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_alice_links_imports_and_commits_from_the_page(
    platform: Platform, git: GitServer, context, seen: list[str], tmp_path: Path
) -> None:
    page = context.new_page()
    steps = Steps(page, tmp_path / "shots", seen)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # the provider's login, on the way to the service
    page.goto(platform.gitsync_url)
    page.click("text=Sign in with")
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "alice")
    steps.shot("provider-login")
    page.click("button[type=submit]")
    if page.locator("text=Allow").count():  # the provider's consent page
        page.click("text=Allow")
    page.wait_for_selector("#aglais-gitsync")
    assert page.locator("#login_widget").inner_text().strip().startswith("alice")
    steps.shot("service-page")

    # her server, from the hub's own spawn page (its options form, as offered)
    page.goto(platform.url + "hub/spawn/alice")
    if page.locator("#spawn_form").count():
        steps.shot("spawn-form")
        page.click("#spawn_form [type=submit]")
    page.wait_for_url(re.compile(r"/user/alice/lab"), timeout=WAIT)
    page.wait_for_selector(".jp-DirListing", timeout=WAIT)
    steps.shot("jupyterlab-started")

    # Services → gitsync, from the hub's menu
    page.goto(platform.url + "hub/home")
    page.click("a.dropdown-toggle:has-text('Services')")
    page.click("a.dropdown-item:has-text('gitsync')")
    page.wait_for_selector("#link-form")
    page.fill("#url", git.url("gaia-notes"))
    page.fill("#branch", "main")
    page.fill("#username", "alice-git")
    page.fill("#token", TOKEN)
    steps.shot("link-form")
    page.click("#link")
    page.wait_for_selector("#notice")
    assert "Linked:" in page.locator("#notice").inner_text()
    row = page.locator("#mine tr[data-link]").last
    link_id = row.get_attribute("data-link")
    assert git.url("gaia-notes") in row.inner_text()
    assert page.locator("#token").input_value() == ""  # never filled in
    steps.shot("linked")

    # the link's view: what it links and what the repository holds, fetched now
    row.locator("text=Open").click()
    page.wait_for_selector("#aglais-gitsync-link", timeout=WAIT)
    assert page.locator("#link-url").inner_text() == git.url("gaia-notes")
    assert page.locator("#link-branch").inner_text() == "main"
    assert page.locator("#link-folder").inner_text() == "the top folder"
    listed = page.locator("#repository-notebooks tbody tr")
    assert [listed.nth(i).get_attribute("data-path") for i in range(listed.count())] == [HR, SKY]
    assert "not imported yet" in page.locator(f'tr[data-path="{HR}"]').inner_text()
    assert TARGET in page.locator(f'tr[data-path="{HR}"]').inner_text()
    assert page.locator("#server-empty").count() == 1  # nothing under gaia-notes/ yet
    steps.shot("link-view")

    page.check(f'#repository-notebooks input[value="{HR}"]')
    page.click("#import")
    page.wait_for_selector("#notice, #error", timeout=WAIT)
    assert page.locator("#error").count() == 0, page.locator("#error").inner_text()
    assert f"imported as {TARGET}" in page.locator("#notice").inner_text()
    assert page.locator(f'tr[data-path="{HR}"]').get_attribute("data-imported") == "yes"
    assert "unchanged in the repository since" in page.locator(f'tr[data-path="{HR}"]').inner_text()
    assert page.locator(f'tr[data-path="{SKY}"]').get_attribute("data-imported") == "no"
    assert page.locator(f'#server-notebooks input[value="{TARGET}"]').count() == 1
    steps.shot("imported")

    # JupyterLab's own file browser shows it
    page.goto(platform.url + "user/alice/lab/tree/gaia-notes/notebooks")
    shown = page.locator(".jp-DirListing-itemText", has_text="hr-diagram.ipynb")
    shown.first.wait_for(state="visible", timeout=WAIT)
    assert page.locator(".jp-DirListing-itemText", has_text="sky-counts.ipynb").count() == 0
    steps.shot("jupyterlab-file-browser")

    # she changes it (JupyterLab's contents API, her browser's login) and commits it
    edit_in_server(context, platform, 1, "plt.scatter(bp_rp, abs_g, s=1)\n")
    open_link(page, platform, link_id)
    commit(page, TARGET, "Smaller dots")
    assert page.locator("#error").count() == 0, page.locator("#error").inner_text()
    assert page.locator("#notice").inner_text() == (
        f"Committed and pushed to 'main' of {git.url('gaia-notes')}."
    )
    steps.shot("committed")
    newest = git.log("gaia-notes")[0]
    assert (newest.author_name, newest.author_email, newest.message) == (*ALICE, "Smaller dots")
    assert "s=1" in git.read("gaia-notes", HR).decode()

    assert dialogs == []
    assert all(TOKEN not in html for html in seen), "the token was in a page"
    page.close()


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_moved_branch_offers_pull_and_retry_and_a_conflict_is_a_warning(
    platform: Platform, git: GitServer, context, seen: list[str], tmp_path: Path
) -> None:
    page = context.new_page()
    steps = Steps(page, tmp_path / "shots", seen)
    page.goto(platform.gitsync_url)
    link_id = page.locator("#mine tr[data-link]").last.get_attribute("data-link")

    # a collaborator changed the other notebook meanwhile: asked, then brought in
    git.commit("gaia-notes", {SKY: notebook("df = spark.read.parquet('/data/gaia/dr3')\n", "df.count()  # all rows\n")}, "Comment the count")  # fmt: skip
    edit_in_server(context, platform, 0, "import matplotlib.pyplot as plt  # plots\n")
    open_link(page, platform, link_id)
    assert page.locator(f'tr[data-path="{SKY}"]').get_attribute("data-changed") == "no"
    commit(page, TARGET, 'Say what the "import" is for')
    assert "has changed since your last pull" in page.locator("#error").inner_text()
    steps.shot("push-refused")
    page.click("#retry")  # the same notebooks and message, with pull
    page.wait_for_selector("#notice, #error, #conflict", timeout=WAIT)
    assert "after bringing in the changes made there since" in page.locator("#notice").inner_text()
    steps.shot("pulled-and-pushed")
    assert git.log("gaia-notes")[0].message == 'Say what the "import" is for'
    assert "# all rows" in git.read("gaia-notes", SKY).decode()  # theirs
    assert "# plots" in git.read("gaia-notes", HR).decode()  # hers

    # the same lines changed on both sides: a warning naming the branch hers is on
    git.commit("gaia-notes", {HR: notebook("import matplotlib.pyplot as plt\n", "plt.hexbin(bp_rp, abs_g)\n")}, "Hexbin", ("Carol Colleague", "carol@example.org"))  # fmt: skip
    edit_in_server(context, platform, 1, "plt.scatter(bp_rp, abs_g, s=0.5)\n")
    open_link(page, platform, link_id)
    assert page.locator(f'tr[data-path="{HR}"]').get_attribute("data-changed") == "yes"
    commit(page, TARGET, "Even smaller dots")
    page.click("#retry")
    page.wait_for_selector("#notice, #error, #conflict", timeout=WAIT)
    warning = page.locator("#conflict.alert-warning").inner_text()
    saved = re.search(r"saved on the branch '(aglais/alice/[^']+)'", warning)
    assert saved, warning
    steps.shot("conflict")
    assert "s=0.5" in git.read("gaia-notes", HR, saved.group(1)).decode()
    assert "hexbin" in git.read("gaia-notes", HR).decode()
    # ticked and said as before, to try again
    assert page.locator(f'#server-notebooks input[value="{TARGET}"]').is_checked()
    assert page.locator("#message").input_value() == "Even smaller dots"
    assert all(TOKEN not in html for html in seen), "the token was in a page"
    page.close()


# -- what others see ------------------------------------------------------------------------


def xsrf_of(page: requests.Response) -> str:
    return page.text.split('name="_xsrf" value="')[1].split('"')[0]


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_others_get_404_a_stopped_server_is_said_and_admins_only_look(
    platform: Platform, git: GitServer
) -> None:
    admin = HubClient(platform.url)
    admin.login("admin", "admin")
    assert admin.get("services/gitsync/").status_code == 200  # the service's login
    links = admin.get("services/gitsync/api/links").json()["links"]
    mine = next(link for link in links if link["user"] == "alice")
    view = f"services/gitsync/?link={mine['id']}"

    bob = HubClient(platform.url)
    bob.login("bob", "bob")
    refused = bob.get(view)
    assert refused.status_code == 404 and f"You have no link {mine['id']}." in refused.text
    assert "Traceback" not in refused.text

    # bob's own link, his server not started: said, with the way to start it
    page = bob.get("services/gitsync/")
    form = next(f for f in forms_of(page.text) if f["fields"].get("action") == "add")
    fields = {**form["fields"], "url": git.url("gaia-notes"), "branch": "main", "username": "bob-git", "token": BOB_TOKEN}  # fmt: skip
    added = bob.session.post(platform.gitsync_url, data=fields, timeout=60)
    bobs = re.findall(r'data-link="(\d+)"', added.text)[-1]
    own = bob.get(f"services/gitsync/?link={bobs}")
    assert own.status_code == 200
    text = html.unescape(own.text)
    assert "start your server first" in text and 'href="/hub/home"' in own.text
    assert f'data-path="{HR}"' in own.text  # the repository's notebooks need no server
    imported = bob.session.post(
        urljoin(platform.url, f"services/gitsync/?link={bobs}"),
        data={"_xsrf": xsrf_of(own), "action": "import", "path": HR},
        timeout=60,
    )
    assert imported.status_code == 409 and 'id="error"' in imported.text
    forged = bob.session.post(
        urljoin(platform.url, f"services/gitsync/?link={bobs}"),
        data={"action": "import", "path": HR},  # no XSRF token: not even read
        timeout=60,
    )
    assert forged.status_code == 403
    assert "start your server first" in html.unescape(imported.text)

    # the admin sees alice's link, not its notebooks, and may not import from it
    seen_by_admin = admin.get(view)
    assert seen_by_admin.status_code == 200 and 'id="not-own"' in seen_by_admin.text
    assert 'id="import-form"' not in seen_by_admin.text
    assert git.url("gaia-notes") in seen_by_admin.text
    forced = admin.session.post(
        urljoin(platform.url, view),
        data={"_xsrf": xsrf_of(admin.get("services/gitsync/")), "action": "import", "path": HR},
        timeout=60,
    )
    assert forced.status_code == 403
    assert "Administrators may list and remove" in html.unescape(forced.text)
    for shown in (refused.text, own.text, imported.text, seen_by_admin.text, forced.text):
        assert TOKEN not in shown and BOB_TOKEN not in shown

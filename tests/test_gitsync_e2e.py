"""Notebooks and Git, end to end: alice logs in through the identity provider, links a
repository on a real Git server (git's own http-backend, tests' own Basic auth), imports
two notebooks into her real JupyterLab, changes one there, commits and pushes it as the
identity provider names her; a collaborator's concurrent change leads to the pull and
retry, and when it conflicts her version is kept on a branch of its own; every failure
is said in words; bob cannot touch her link; the token is in no log, page or clone.

JupyterLab only: Zeppelin cannot run on this platform yet (issue 12), and so no test
imports into a Zeppelin server.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aglais_hub.testing.gitserver import GitServer, notebook, refusing_port
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOKEN = "ghp_" + secrets.token_hex(16)  # alice's token at the Git server
HR = "notebooks/hr-diagram.ipynb"
SKY = "notebooks/sky-counts.ipynb"
ALICE = ("Alice Astronomer", "alice@example.org")  # the demo provider's claims for alice


@pytest.fixture(scope="module")
def git() -> Iterator[GitServer]:
    with GitServer({"alice-git": TOKEN}) as server:
        server.create_repo("gaia-notes")
        yield server


@pytest.fixture(scope="module")
def platform(jupyterlab_platform: Platform) -> Platform:
    return jupyterlab_platform


class User:
    """A demo user logged in through the provider, with a hub token, their server up."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.client = HubClient(platform.url)
        self.client.login(name, name)
        self.token = self.client.new_token()
        self.api = platform.url + "services/gitsync/api/"
        self.server = platform.url + f"user/{name}/api/contents/"
        self.headers = {"Authorization": f"token {self.token}"}

    def call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(
            method, self.api + path, headers=self.headers, timeout=120, **kwargs
        )

    def read(self, path: str) -> dict:
        response = requests.get(self.server + path, headers=self.headers, timeout=60)
        assert response.status_code == 200, (path, response.text)
        return response.json()["content"]

    def write(self, path: str, content: dict) -> None:
        body = {"type": "notebook", "format": "json", "content": content}
        response = requests.put(self.server + path, json=body, headers=self.headers, timeout=60)
        assert response.status_code in (200, 201), response.text

    def ls(self, folder: str) -> list[str]:
        response = requests.get(self.server + folder, headers=self.headers, timeout=60)
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json()["content"])


def sources(content: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in content["cells"]]


def edited(content: dict, index: int, source: str) -> dict:
    changed = json.loads(json.dumps(content))
    changed["cells"][index]["source"] = source
    return changed


@pytest.fixture(scope="module")
def alice(platform: Platform) -> User:
    user = User(platform, "alice")
    assert user.client.start_server(timeout=180).get("ready"), platform.log_tail()
    return user


@pytest.fixture(scope="module")
def link(alice: User, git: GitServer) -> dict:
    response = alice.call(
        "POST",
        "links",
        json={
            "url": git.url("gaia-notes"),
            "branch": "main",
            "token": TOKEN,
            "username": "alice-git",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_alice_imports_two_notebooks_into_a_folder_named_after_the_repository(alice, link):
    response = alice.call("GET", f"links/{link['id']}/notebooks")
    assert response.status_code == 200, response.text
    listed = response.json()["notebooks"]
    assert [(n["path"], n["imported"]) for n in listed] == [(HR, False), (SKY, False)]
    response = alice.call("POST", f"links/{link['id']}/import", json={"paths": [HR, SKY]})
    assert response.status_code == 200, response.text
    steps = response.json()["steps"]
    assert [(s["action"], s["target"]) for s in steps] == [
        ("new", "gaia-notes/" + HR),
        ("new", "gaia-notes/" + SKY),
    ]
    assert alice.ls("gaia-notes/notebooks") == ["hr-diagram.ipynb", "sky-counts.ipynb"]
    assert sources(alice.read("gaia-notes/" + HR))[1] == "plt.scatter(bp_rp, abs_g)\n"
    # importing again changes nothing and says so
    again = alice.call("POST", f"links/{link['id']}/import", json={"paths": [HR]}).json()
    assert again["steps"][0]["action"] == "unchanged"


def test_she_changes_one_in_jupyterlab_commits_and_pushes_as_the_provider_names_her(
    alice, link, git
):
    target = "gaia-notes/" + HR
    alice.write(target, edited(alice.read(target), 1, "plt.scatter(bp_rp, abs_g, s=1)\n"))
    response = alice.call(
        "POST", f"links/{link['id']}/commit", json={"paths": [target], "message": "Smaller dots"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["pushed"] is True
    newest = git.log("gaia-notes")[0]
    assert (newest.author_name, newest.author_email, newest.message) == (*ALICE, "Smaller dots")
    assert sources(json.loads(git.read("gaia-notes", HR)))[1] == "plt.scatter(bp_rp, abs_g, s=1)\n"
    # a second commit of the same version has nothing to do
    same = alice.call(
        "POST", f"links/{link['id']}/commit", json={"paths": [target], "message": "Again"}
    )
    assert same.status_code == 200 and same.json()["pushed"] is False, same.text
    assert "Nothing to commit" in same.json()["message"]


def test_a_collaborators_change_elsewhere_is_pulled_in_on_retry(alice, link, git):
    """The collaborator changed the other notebook meanwhile: the push is refused, saying
    so; the pull and retry brings their change in and pushes hers; both are there."""
    git.commit("gaia-notes", {SKY: notebook("df = spark.read.parquet('/data/gaia/dr3')\n", "df.count()  # all rows\n")}, "Comment the count")  # fmt: skip
    target = "gaia-notes/" + HR
    alice.write(target, edited(alice.read(target), 0, "import matplotlib.pyplot as plt  # plots\n"))
    body = {"paths": [target], "message": "Say what the import is for"}
    refused = alice.call("POST", f"links/{link['id']}/commit", json=body)
    assert refused.status_code == 409 and refused.json()["retry"] == "pull", refused.text
    assert "has changed since your last pull" in refused.json()["message"]
    retried = alice.call("POST", f"links/{link['id']}/commit", json={**body, "pull": True})
    assert retried.status_code == 200, retried.text
    assert retried.json()["pushed"] and retried.json()["rebased"]
    assert "# all rows" in git.read("gaia-notes", SKY).decode()  # theirs
    assert "# plots" in git.read("gaia-notes", HR).decode()  # hers
    assert git.log("gaia-notes")[0].message == "Say what the import is for"


def test_a_conflicting_change_keeps_her_version_on_a_branch_and_loses_nothing(alice, link, git):
    git.commit("gaia-notes", {HR: notebook("import matplotlib.pyplot as plt\n", "plt.hexbin(bp_rp, abs_g)\n")}, "Hexbin", ("Carol Colleague", "carol@example.org"))  # fmt: skip
    target = "gaia-notes/" + HR
    alice.write(target, edited(alice.read(target), 1, "plt.scatter(bp_rp, abs_g, s=0.5)\n"))
    body = {"paths": [target], "message": "Even smaller dots", "pull": True}
    conflict = alice.call("POST", f"links/{link['id']}/commit", json=body)
    assert conflict.status_code == 409, conflict.text
    answer = conflict.json()
    assert answer["paths"] == [HR] and answer["saved_branch"].startswith("aglais/alice/")
    assert f"Your version is saved on the branch '{answer['saved_branch']}'" in answer["message"]
    # hers on the new branch, Carol's on main, and hers still in her server
    assert "s=0.5" in git.read("gaia-notes", HR, answer["saved_branch"]).decode()
    assert "hexbin" in git.read("gaia-notes", HR).decode()
    assert "s=0.5" in sources(alice.read(target))[1]
    # importing now keeps both in her server, named so she can tell them apart
    steps = alice.call("POST", f"links/{link['id']}/import", json={"paths": [HR]}).json()["steps"]
    assert steps[0]["action"] == "kept-both"
    beside = steps[0]["target"]
    assert beside.startswith("gaia-notes/notebooks/hr-diagram (git ") and beside.endswith(".ipynb")
    assert "hexbin" in sources(alice.read(beside))[1]
    assert "s=0.5" in sources(alice.read(target))[1]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"token": "wrong-" + TOKEN[:8]}, 403, "refused"),
        ({"url": "REPO:missing"}, 404, "no repository"),
        ({"branch": "no-such-branch"}, 404, "has no branch 'no-such-branch'"),
        ({"url": "REFUSING"}, 502, ""),
    ],
)
def test_each_failure_gets_a_clear_message(alice, git, fields, status, words):
    with refusing_port() as port:
        url = fields.get("url", git.url("gaia-notes"))
        url = {"REPO:missing": git.url("no-such-repo"), "REFUSING": f"http://127.0.0.1:{port}/x.git"}.get(url, url)  # fmt: skip
        # the folder keeps it apart from the module's link (one link per place)
        body = {"url": url, "branch": "main", "folder": "notebooks", "token": TOKEN}
        body["username"] = "alice-git"
        body.update({k: v for k, v in fields.items() if k != "url"})
        made = alice.call("POST", "links", json=body)
        assert made.status_code == 201, made.text
        response = alice.call("GET", f"links/{made.json()['id']}/notebooks")
    assert response.status_code == status, response.text
    message = response.json()["message"]
    assert words in message and url in message and TOKEN not in message
    alice.call("DELETE", f"links/{made.json()['id']}")


def test_bob_gets_404_on_everything_of_alices_link(platform, alice, link):
    bob = User(platform, "bob")
    for method, path, body in (
        ("GET", f"links/{link['id']}/notebooks", None),
        ("POST", f"links/{link['id']}/import", {"paths": [HR]}),
        ("POST", f"links/{link['id']}/commit", {"paths": ["gaia-notes/" + HR], "message": "x"}),
    ):
        response = bob.call(method, path, json=body)
        assert response.status_code == 404, (path, response.text)


def test_the_token_is_in_no_log_page_clone_or_request(platform, alice, link, git):
    assert TOKEN not in platform.log_file.read_text(errors="replace")
    page = alice.client.get("services/gitsync/")
    assert page.status_code == 200 and git.url("gaia-notes") in page.text
    assert TOKEN not in page.text
    clones = [p for p in Path(platform.state_dir).rglob(".git") if p.is_dir()]
    assert clones, "no working copy found under the demo's state directory"
    for clone in clones:
        for file in (f for f in clone.rglob("*") if f.is_file()):
            assert TOKEN.encode() not in file.read_bytes(), file
    assert git.requests and all(TOKEN not in r.target for r in git.requests)

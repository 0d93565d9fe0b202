"""Linking a Git repository (aglais_hub.gitsync) against a real Git server: git's own
http-backend behind our Basic-auth HTTP front (aglais_hub.testing.gitserver), on a free
loopback port. Every test drives the real ``git`` CLI through WorkingCopy and looks at
the result the way a user (or their collaborator) would: on the server.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest

from aglais_hub.gitsync import (
    AuthenticationFailed,
    Author,
    BranchNotFound,
    Credentials,
    HostUnreachable,
    InvalidPath,
    InvalidRepositoryUrl,
    MergeConflict,
    PathNotFound,
    PushRejected,
    RepositoryNotFound,
    WorkingCopy,
    askpass,
)
from aglais_hub.gitsync.git import clean_path
from aglais_hub.testing.gitserver import DEFAULT_FILES, GitServer, notebook, refusing_port

pytestmark = pytest.mark.timeout(60)

# Fresh every run, and shaped like real tokens, so finding one anywhere is no accident.
TOKEN = "glpat-" + secrets.token_hex(16)
BOB_TOKEN = "glpat-" + secrets.token_hex(16)
ALICE = Author("Alice Example", "alice@example.org")
BOB = ("Bob Collaborator", "bob@example.org")
SKY = "notebooks/sky-counts.ipynb"
HR = "notebooks/hr-diagram.ipynb"


def secrets_of(token: str = TOKEN) -> list[bytes]:
    """The token as it could leak: raw, and inside an HTTP Basic header."""
    return [token.encode(), base64.b64encode(f"alice:{token}".encode())]


def stray_gits(url: str | None = None) -> list[str]:
    """Command lines of running git processes this test process started, or (``url``)
    that talk to that server: git's helpers outlive a killed git as orphans."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        ours = int(fields[1]) == os.getpid() or (url is not None and url in cmdline)
        if ours and "git" in cmdline and fields[0] != "Z":
            found.append(cmdline)
    return found


def assert_no_stray_git(url: str | None = None, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while stray_gits(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stray_gits(url), f"git processes left running: {stray_gits(url)}"


@pytest.fixture(autouse=True)
def _no_git_left_behind():
    yield
    assert_no_stray_git()


@pytest.fixture
def server():
    with GitServer({"alice": TOKEN, "bob": BOB_TOKEN}, read_only={"bob"}) as git_server:
        yield git_server
        assert_no_stray_git(git_server.base_url)
    assert not git_server.root.exists(), "the server left its repositories behind"


@pytest.fixture
def repo(server: GitServer) -> str:
    return server.create_repo("analysis")


def working_copy(tmp_path: Path, url: str, token: str = TOKEN, **kwargs) -> WorkingCopy:
    return WorkingCopy(
        tmp_path / "alice" / "analysis", url, credentials=Credentials("alice", token), **kwargs
    )


@pytest.fixture
async def linked(tmp_path: Path, repo: str) -> WorkingCopy:
    copy = working_copy(tmp_path, repo)
    await copy.clone_or_fetch()
    return copy


def edited(path: str, old: str, new: str) -> str:
    text = DEFAULT_FILES[path]
    assert old in text
    return text.replace(old, new)


# ---- linking and importing ----------------------------------------------------------


async def test_linking_with_a_token_lists_the_two_notebooks_and_reads_one(tmp_path, repo):
    copy = working_copy(tmp_path, repo)
    await copy.clone_or_fetch()

    notebooks = await copy.list_notebooks()
    assert [(n.path, n.kind) for n in notebooks] == [(HR, "jupyter"), (SKY, "jupyter")]
    assert all(len(n.blob) == 40 and n.size > 0 for n in notebooks)
    assert await copy.list_notebooks("notebooks") == notebooks
    assert await copy.list_notebooks("elsewhere") == []

    content = await copy.read_file(SKY)
    assert content.decode() == DEFAULT_FILES[SKY]
    assert json.loads(content)["cells"][0]["source"] == [
        "df = spark.read.parquet('/data/gaia/dr3')\n"
    ]
    with pytest.raises(PathNotFound, match="no file notebooks/missing.ipynb"):
        await copy.read_file("notebooks/missing.ipynb")
    assert (await copy.status()).words == f"Up to date with 'main' of {repo}."


async def test_zeppelin_notes_are_listed_and_other_json_files_are_not(tmp_path, server):
    note = {"name": "Gaia", "paragraphs": [{"text": "%spark\nspark.range(3).show()"}]}
    url = server.create_repo(
        "zeppelin",
        {
            "notes/2ABCDEF12/note.json": json.dumps(note),
            "notes/Sky counts_2ABC.zpln": json.dumps(note),
            "notes/settings.json": json.dumps({"paragraphs": "not a list"}),
            "notes/broken.json": "{not json",
            "notes-old/old.ipynb": notebook("1"),
        },
    )
    copy = working_copy(tmp_path, url)
    await copy.clone_or_fetch()

    listed = await copy.list_notebooks("notes")
    assert [(n.path, n.kind) for n in listed] == [
        ("notes/2ABCDEF12/note.json", "zeppelin"),
        ("notes/Sky counts_2ABC.zpln", "zeppelin"),
    ]


async def test_fetching_again_brings_a_collaborators_new_commit(server, repo, linked):
    server.commit("analysis", {HR: edited(HR, "abs_g", "abs_g, s=1")}, "Smaller points", BOB)
    assert (await linked.status()).words == f"1 commit on 'main' of {repo} to pull."

    await linked.clone_or_fetch()

    assert b"abs_g, s=1" in (linked.path / HR).read_bytes()
    assert (await linked.status()).ahead == 0


# ---- committing and pushing ------------------------------------------------------------


async def test_a_commit_is_pushed_with_the_users_name_and_message(server, repo, linked):
    new = edited(SKY, "df.count()", "df.filter('parallax > 10').count()")

    sha = await linked.commit({SKY: new}, "Count nearby stars", ALICE)
    assert (await linked.status()).words == f"1 commit to push to 'main' of {repo}."
    result = await linked.push()

    assert result.pushed and result.commit == sha and result.branch == "main"
    head = server.log("analysis")[0]
    assert (head.sha, head.message) == (sha, "Count nearby stars")
    assert (head.author_name, head.author_email) == ("Alice Example", "alice@example.org")
    assert (head.committer_name, head.committer_email) == ("Alice Example", "alice@example.org")
    assert server.read("analysis", SKY).decode() == new
    assert (await linked.status()).words == f"Up to date with 'main' of {repo}."
    # the same content again is no commit at all
    assert await linked.commit({SKY: new}, "Again", ALICE) is None


async def test_a_concurrent_change_to_another_notebook_is_pulled_in_and_pushed(server, linked):
    mine = edited(SKY, "df.count()", "df.count()  # all of DR3")
    theirs = edited(HR, "abs_g", "abs_g, s=1")
    await linked.commit({SKY: mine}, "Comment the count", ALICE)
    server.commit("analysis", {HR: theirs}, "Smaller points", BOB)

    with pytest.raises(PushRejected) as rejected:
        await linked.push()
    assert "has changed since your last pull" in str(rejected.value)
    assert (await linked.status()).words.startswith("1 commit to push and 1 commit to pull")

    result = await linked.pull_and_retry("alice", ALICE)

    assert result.pushed and result.rebased
    log = server.log("analysis")
    assert [c.message for c in log] == ["Comment the count", "Smaller points", "Initial notebooks"]
    assert log[0].author_name == "Alice Example"
    assert server.read("analysis", SKY).decode() == mine
    assert server.read("analysis", HR).decode() == theirs
    assert server.branches("analysis") == ["main"]


async def test_a_repository_named_like_an_error_is_no_error_of_that_kind(tmp_path, server):
    url = server.create_repo("openssl-certificate-timeout-notes")
    copy = working_copy(tmp_path, url)
    await copy.clone_or_fetch()
    await copy.commit({SKY: edited(SKY, "df.count()", "df.count() + 1")}, "Mine", ALICE)
    server.commit("openssl-certificate-timeout-notes", {"README.md": "# Notes\n"}, "Theirs", BOB)

    with pytest.raises(PushRejected):
        await copy.push()
    missing = working_copy(tmp_path / "2", server.url("openssl-certificate-timeout-gone"))
    with pytest.raises(RepositoryNotFound):
        await missing.clone_or_fetch()


async def test_a_conflicting_change_keeps_both_versions_and_says_where_yours_is(server, linked):
    mine = edited(SKY, "df.count()", "df.filter('ruwe < 1.4').count()")
    theirs = edited(SKY, "df.count()", "df.filter('parallax > 0').count()")
    await linked.commit({SKY: mine}, "Good astrometry only", ALICE)
    server.commit("analysis", {SKY: theirs}, "Positive parallaxes", BOB)

    with pytest.raises(MergeConflict) as raised:
        await linked.pull_and_retry("alice@example.org", ALICE)

    conflict = raised.value
    assert conflict.paths == [SKY]
    assert conflict.saved_branch.startswith("aglais/alice-example.org/")
    assert conflict.saved_branch in str(conflict) and SKY in str(conflict)
    assert "'main' is left as it was" in str(conflict)
    # nothing is lost: the user's version on its branch, the collaborator's on main
    assert sorted(server.branches("analysis")) == sorted(["main", conflict.saved_branch])
    assert server.read("analysis", SKY, conflict.saved_branch).decode() == mine
    saved = server.log("analysis", conflict.saved_branch)[0]
    assert (saved.message, saved.author_name) == ("Good astrometry only", "Alice Example")
    assert server.read("analysis", SKY).decode() == theirs
    assert server.log("analysis")[0].message == "Positive parallaxes"
    # the hub's copy now matches the remote again, ready for the next import
    assert (await linked.status()).words.startswith("Up to date")
    assert (linked.path / SKY).read_text() == theirs


# ---- clear errors -----------------------------------------------------------------------


async def test_a_wrong_token_is_refused_with_a_clear_message(tmp_path, repo):
    wrong = "glpat-" + secrets.token_hex(16)
    copy = working_copy(tmp_path, repo, token=wrong)

    with pytest.raises(AuthenticationFailed) as raised:
        await copy.clone_or_fetch()

    message = str(raised.value)
    assert message.startswith(f"The Git server refused the token for {repo}")
    assert wrong not in message and TOKEN not in message
    assert raised.value.status == 403
    assert not copy.path.exists()


async def test_a_private_repository_without_a_token_asks_for_one(tmp_path, repo):
    copy = WorkingCopy(tmp_path / "copy", repo)

    with pytest.raises(
        AuthenticationFailed, match="asks for credentials: give a personal access token"
    ):
        await copy.clone_or_fetch()


async def test_an_unknown_repository_is_named(tmp_path, server, repo):
    url = server.url("no-such-repo")
    copy = working_copy(tmp_path, url)

    with pytest.raises(RepositoryNotFound) as raised:
        await copy.clone_or_fetch()

    assert str(raised.value).startswith(
        f"There is no repository at {url}, or the token cannot see it"
    )
    assert TOKEN not in str(raised.value)
    assert raised.value.status == 404


async def test_a_branch_that_does_not_exist_is_named_with_the_ones_that_do(tmp_path, repo):
    copy = working_copy(tmp_path, repo, branch="paper-draft")

    with pytest.raises(BranchNotFound) as raised:
        await copy.clone_or_fetch()

    assert str(raised.value) == (
        f"The repository {repo} has no branch 'paper-draft' (its branches: main)."
    )
    assert not copy.path.exists()


async def test_a_branch_deleted_after_linking_is_named_on_fetch(tmp_path, server, repo):
    server.commit("analysis", {"draft.ipynb": notebook("1")}, "Draft", BOB, branch="draft")
    copy = working_copy(tmp_path, repo, branch="draft")
    await copy.clone_or_fetch()
    server.delete_branch("analysis", "draft")

    with pytest.raises(BranchNotFound, match=f"^The repository {repo} has no branch 'draft'.$"):
        await copy.clone_or_fetch()


async def test_an_unreachable_host_says_so(tmp_path):
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/analysis.git"
        copy = working_copy(tmp_path, url)
        with pytest.raises(HostUnreachable) as raised:
            await copy.clone_or_fetch()
    assert str(raised.value) == (
        f"Could not reach the Git server for {url}: the connection was refused "
        "(is the host right, and is the server up?)."
    )
    assert TOKEN not in str(raised.value)

    unknown = working_copy(tmp_path, "https://git.nonexistent.invalid/org/analysis.git", timeout=20)
    with pytest.raises(HostUnreachable, match=r"git\.nonexistent\.invalid/org/analysis\.git"):
        await unknown.clone_or_fetch()


async def test_a_token_that_may_only_read_is_told_it_cannot_push(tmp_path, server, repo):
    copy = WorkingCopy(tmp_path / "bob", repo, credentials=Credentials("bob", BOB_TOKEN))
    await copy.clone_or_fetch()
    await copy.commit({SKY: edited(SKY, "df.count()", "df.count() - 0")}, "Try", ALICE)

    with pytest.raises(AuthenticationFailed) as raised:
        await copy.push()

    assert str(raised.value) == (
        f"The token may not push to {repo}: give it access to this repository with write "
        "permission."
    )
    assert BOB_TOKEN not in str(raised.value)
    assert server.log("analysis")[0].message == "Initial notebooks"


async def test_a_server_that_stops_answering_ends_in_a_clear_error_and_no_stray_git(server, linked):
    server.push_delay = 2.0
    linked.timeout = 0.5
    await linked.commit({SKY: edited(SKY, "df.count()", "df.count() * 1")}, "Slow", ALICE)

    with pytest.raises(HostUnreachable) as raised:
        await linked.push()

    assert str(raised.value) == (
        f"The Git server for {linked.url} did not finish answering within 0.5 seconds; "
        "try again later."
    )
    # nothing of that push is left running (git, git-remote-http, send-pack), although
    # the server has not answered yet
    assert_no_stray_git(linked.url, grace=0.3)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"https://alice:{TOKEN}@git.example.org/org/repo.git", "contains a user name or token"),
        (f"https://{TOKEN}@git.example.org/org/repo.git", "contains a user name or token"),
        (
            f"https://git.example.org/org/repo.git?private_token={TOKEN}",
            r"must not have a '\?' query",
        ),
        ("http://git.example.org/org/repo.git", "unencrypted"),
        (f"ssh://git:{TOKEN}@github.com/org/repo.git", "contains a password"),
        ("ssh://-oProxyCommand=x@github.com/org/repo.git", "not a valid SSH repository URL"),
        ("file:///srv/git/repo.git", "Only https://"),
        ("/srv/git/repo.git", "Only https://"),
        ("ext::sh -c touch% /tmp/pwned", "spaces or control characters"),
        ("https://git.example.org", "no repository"),
    ],
    ids=[
        "password",
        "token-as-user",
        "token-in-query",
        "plain-http",
        "ssh-password",
        "ssh-option-as-user",
        "file",
        "local-path",
        "ext-transport",
        "no-path",
    ],
)
def test_urls_git_must_not_be_given_are_refused(tmp_path, url, reason):
    with pytest.raises(InvalidRepositoryUrl, match=reason) as raised:
        WorkingCopy(tmp_path / "copy", url, credentials=Credentials("alice", TOKEN))
    assert TOKEN not in str(raised.value)
    assert raised.value.status == 400


async def test_paths_outside_the_working_copy_are_refused(tmp_path, linked):
    outside = tmp_path / "outside"
    outside.mkdir()
    (linked.path / "escape").symlink_to(outside)  # as a repository's symbolic link would be
    for bad in ("../x.ipynb", "/etc/passwd", ".git/config", "a/.GIT/hooks/x", "escape/x.ipynb"):
        with pytest.raises(InvalidPath):
            await linked.commit({bad: notebook("1")}, "Escape", ALICE)
    with pytest.raises(InvalidPath):
        await linked.read_file(".git/config")
    assert list(outside.iterdir()) == []
    assert clean_path("./notebooks//a.ipynb") == "notebooks/a.ipynb"


# ---- the token never leaks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("Username for 'https://git.example.org': ", "alice\n"),
        ("Password for 'https://alice@git.example.org': ", f"{TOKEN}\n"),
        ("Password for 'https://alice@evil.example.net': ", None),
        ("Password for 'https://alice@git.example.org.evil.net': ", None),
        ("Password for 'https://alice@git.example.org:8443': ", None),
        ("Are you sure you want to continue connecting (yes/no)? ", None),
    ],
    ids=["username", "password", "other-host", "suffix-host", "other-port", "other-question"],
)
def test_the_askpass_program_answers_only_the_linked_host(prompt, answer):
    home = askpass.directory()
    env = {"PATH": "/usr/bin:/bin", **askpass.environment(home, "git.example.org", "alice", TOKEN)}
    done = subprocess.run([env["GIT_ASKPASS"], prompt], env=env, capture_output=True, text=True)
    assert (done.stdout if done.returncode == 0 else None) == answer
    assert TOKEN not in (home / "askpass").read_text()


def _sample_command_lines(stop: threading.Event, seen: list[bytes]) -> None:
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.append(cmdline.read_bytes())
            except OSError:
                pass  # the process ended meanwhile
        time.sleep(0.002)


async def test_the_token_is_never_in_urls_arguments_files_errors_or_logs(server, linked, caplog):
    caplog.set_level("DEBUG", logger="aglais_hub.gitsync")
    await linked.clone_or_fetch()  # fetch on an existing clone, with the token
    # a push held by the server for a moment, so its git processes can be watched
    server.push_delay = 1.0
    # with 3 MB of data, over git's 1 MiB http.postBuffer: the pack goes up chunked
    big = {SKY: edited(SKY, "df.count()", "df.count() + 0"), "data/sample.bin": os.urandom(3 << 20)}
    await linked.commit(big, "Slow push", ALICE)
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=_sample_command_lines, args=(stop, seen))
    sampler.start()
    try:
        await linked.push()
    finally:
        stop.set()
        sampler.join()
    server.push_delay = 0.0
    assert server.read("analysis", "data/sample.bin") == big["data/sample.bin"]
    assert any(r.body.startswith("chunked") for r in server.requests)
    wrong = "glpat-" + secrets.token_hex(16)
    with pytest.raises(AuthenticationFailed) as refused:
        await working_copy(
            linked.path.parent.parent / "other", linked.url, token=wrong
        ).clone_or_fetch()

    # processes: git was seen pushing, and no command line held the token
    gits = {c.replace(b"\0", b" ") for c in seen if b"git" in c}
    url = linked.url.encode()
    assert any(b"push" in c and b"origin" in c for c in gits), f"no git push in {len(seen)} samples"
    assert any(b"remote-http" in c and url in c for c in gits), f"git-remote-http not seen: {gits}"
    for cmdline in seen:
        assert not any(s in cmdline for s in secrets_of()), cmdline
    # the working copy's .git: config, logs, FETCH_HEAD, packed refs, objects' names...
    files = [p for p in (linked.path / ".git").rglob("*") if p.is_file()]
    assert (linked.path / ".git" / "config") in files
    for path in files:
        data = path.read_bytes()
        assert not any(s in data for s in secrets_of()), f"the token is in {path}"
    assert f"url = {linked.url}\n" in (linked.path / ".git" / "config").read_text()
    objects = subprocess.run(
        ["git", "-C", str(linked.path), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout  # the objects' content, which is compressed on disk
    assert b"Slow push" in objects and not any(s in objects for s in secrets_of())
    # the server saw credentials only in headers: never in a path or query
    assert server.requests and any(r.user == "alice" for r in server.requests)
    for request in server.requests:
        assert not any(s.decode() in request.target for s in secrets_of()), request
        assert "@" not in request.target
    # errors, reprs and logs
    assert TOKEN not in str(refused.value) and wrong not in str(refused.value)
    assert TOKEN not in repr(linked) + repr(linked.credentials)
    assert caplog.records and TOKEN not in caplog.text

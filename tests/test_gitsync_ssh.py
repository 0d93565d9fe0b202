"""SSH links (aglais_hub.gitsync): a deploy key the service makes per link, and git over
ssh against a real SSH Git server: Debian's sshd with a test config and git's own
upload-pack/receive-pack (aglais_hub.testing.sshgitserver), on a free loopback port.

The link is made through the `Service` and used through `Transfers`, as the API and
the page do; the result is looked at on the server, as a collaborator would.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path

import pytest

from aglais_hub.gitsync import (
    AuthenticationFailed,
    Author,
    GitSyncError,
    HostUnreachable,
    InvalidRepositoryUrl,
    RemoteUrl,
    SshKey,
    WorkingCopy,
)
from aglais_hub.gitsync.rules import link_changes, new_link
from aglais_hub.gitsync.service import Caller, Service
from aglais_hub.gitsync.settings import Settings
from aglais_hub.gitsync.sshkey import generate
from aglais_hub.gitsync.store import Store
from aglais_hub.gitsync.transfer import Transfers
from aglais_hub.gitsync.vault import Vault
from aglais_hub.reservations.rules import Refused
from aglais_hub.testing import sshgitserver
from aglais_hub.testing.gitserver import notebook, refusing_port
from aglais_hub.testing.sshgitserver import SshGitServer

pytestmark = pytest.mark.timeout(60)

ALICE = Caller("alice")
AUTHOR = Author("Alice Example", "alice@example.org")
SKY = "notebooks/sky-counts.ipynb"
needs_sshd = pytest.mark.skipif(
    not sshgitserver.available() and os.environ.get("CI") != "true",
    reason="Debian's sshd is missing: `make sshd` installs openssh-server",
)


# ---- URLs and rules (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url", "user", "host", "port", "path"),
    [
        (
            "ssh://git@github.com/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "git",
            "github.com",
            None,
            "/org/repo.git",
        ),
        (
            "  ssh://git@git.example.org:2222/org/repo.git\n",
            "ssh://git@git.example.org:2222/org/repo.git",
            "git",
            "git.example.org",
            2222,
            "/org/repo.git",
        ),
        (
            "git+ssh://git@gitlab.com/group/sub/repo.git",
            "ssh://git@gitlab.com/group/sub/repo.git",
            "git",
            "gitlab.com",
            None,
            "/group/sub/repo.git",
        ),
        (
            "git@github.com:org/repo.git",
            "git@github.com:org/repo.git",
            "git",
            "github.com",
            None,
            "org/repo.git",
        ),
        ("example.org:repo.git", "example.org:repo.git", None, "example.org", None, "repo.git"),
        ("ssh://git@[::1]:22/r.git", "ssh://git@[::1]:22/r.git", "git", "::1", 22, "/r.git"),
    ],
    ids=["ssh", "ssh-port", "git+ssh", "scp-like", "scp-like-no-user", "ipv6"],
)
def test_ssh_urls_are_parsed(text, url, user, host, port, path):
    remote = RemoteUrl.parse(text)
    assert (remote.url, remote.user, remote.host, remote.port, remote.path) == (
        url,
        user,
        host,
        port,
        path,
    )
    assert remote.is_ssh and remote.scheme == "ssh" and str(remote) == url


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ssh://git:s3cret@github.com/org/repo.git", "contains a password"),
        ("ssh://-oProxyCommand=touch@github.com/org/repo.git", "not a valid SSH"),
        ("ssh://git@-oProxyCommand=x/org/repo.git", "not a valid SSH"),
        ("git@github.com:-upload-pack=x", "no repository"),
        ("ssh://git@github.com", "no repository"),
        ("git@github.com:", "no repository"),
        ("ssh://git@github.com:99999/r.git", "port"),
        ("ssh://git@github.com:22x/r.git", "port"),
        ("ssh://git@github.com/r.git?x=1", r"'\?' query"),
        ("ssh://git@/r.git", "no host"),
    ],
    ids=[
        "password",
        "option-as-user",
        "option-as-host",
        "option-as-path",
        "no-path",
        "scp-no-path",
        "port-range",
        "port-text",
        "query",
        "no-host",
    ],
)
def test_ssh_urls_git_must_not_be_given_are_refused(text, reason):
    with pytest.raises(InvalidRepositoryUrl, match=reason) as raised:
        RemoteUrl.parse(text)
    assert "s3cret" not in str(raised.value)
    assert raised.value.status == 400


def refused(fn, *args) -> str:  # noqa: ANN001
    with pytest.raises(Refused) as caught:
        fn(*args)
    assert caught.value.status == 422
    return caught.value.message


def test_an_ssh_link_takes_no_token_and_an_https_link_still_needs_one():
    ssh = new_link({"url": "git@github.com:org/repo.git", "branch": "main"})
    assert (ssh.url, ssh.token, ssh.username) == ("git@github.com:org/repo.git", None, None)
    for field in ("token", "username"):
        message = refused(
            new_link, {"url": "ssh://git@github.com/org/repo.git", "branch": "main", field: "x1"}
        )
        assert message.startswith(f"'{field}' is not used with an SSH URL") and "x1" not in message
    assert new_link({"url": "git@h:r.git", "branch": "main", "token": ""}).token is None
    assert refused(new_link, {"url": "https://github.com/org/r.git", "branch": "main"}) == (
        "'token' is missing."
    )


def test_a_deploy_key_is_ed25519_in_openssh_format():
    private, public = generate("aglais-hub alice link 7")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert re.fullmatch(
        r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/=]+ aglais-hub alice link 7", public
    )
    key = SshKey(private, public)
    assert private not in repr(key) and "PRIVATE" not in repr(key)


# ---- the service: the key is made, sealed and shown ------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Service:
    database = f"sqlite:///{tmp_path / 'gitsync.sqlite'}"
    store = Store(database)
    store.migrate()
    settings = Settings(8091, database, tmp_path / "work", "http://127.0.0.1:8000/")
    yield Service(store, Vault([os.urandom(32)]), settings)
    store.dispose()


def body_lines(private: str) -> list[bytes]:
    """The private key as it could leak: each base64 line of its body."""
    return [line.encode() for line in private.splitlines() if "-----" not in line and line]


def test_an_ssh_link_gets_its_own_sealed_deploy_key(service: Service, tmp_path: Path):
    link = service.create_link(
        ALICE, new_link({"url": "git@h.example:org/r.git", "branch": "main"})
    )
    other = service.create_link(
        ALICE, new_link({"url": "git@h.example:org/r.git", "branch": "dev"})
    )
    assert link.public_key.endswith(f" aglais-hub alice link {link.id}")
    assert link.public_key.split()[1] != other.public_key.split()[1]  # a key per link
    assert link.token_sealed is None and link.key_sealed
    private = service.key_of(link)
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    shown = link.as_json()
    assert shown["public_key"] == link.public_key and shown["has_token"] is False
    assert not any(line.decode() in str(shown) for line in body_lines(private))
    assert "PRIVATE" not in repr(link) + str(shown)
    # not in the database in clear
    data = b"".join(p.read_bytes() for p in tmp_path.glob("gitsync.sqlite*"))  # and -wal
    assert link.public_key.split()[1].encode() in data
    assert b"PRIVATE KEY" not in data and not any(line in data for line in body_lines(private))
    # an SSH link's token cannot be set later either; its branch can change
    assert refused(
        service.change_link, ALICE, link.id, link_changes({"token": "t0ken"})
    ).startswith("'token' is not used with an SSH link")
    assert service.change_link(ALICE, link.id, link_changes({"folder": "nb"})).folder == "nb"
    assert service.key_of(service.get_link(ALICE, link.id)) == private  # the key stays


# ---- git over ssh, against Debian's sshd ------------------------------------------------


@pytest.fixture(scope="module")
def sshd():
    if not sshgitserver.available():
        pytest.skip("Debian's sshd is missing: `make sshd` installs openssh-server")
    with SshGitServer() as server:
        yield server


def key_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("aglais-sshkey-*")}


def _sample(stop: threading.Event, seen: list[bytes], dirs: list[str]) -> None:
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.append(cmdline.read_bytes())
            except OSError:
                pass  # the process ended meanwhile
        dirs.extend(key_dirs())
        time.sleep(0.002)


@needs_sshd
async def test_an_ssh_link_is_read_and_pushed_with_its_deploy_key(
    sshd: SshGitServer, service: Service, caplog
):
    caplog.set_level("DEBUG", logger="aglais_hub.gitsync")
    url = sshd.create_repo("analysis")
    link = service.create_link(ALICE, new_link({"url": url, "branch": "main"}))
    private = service.key_of(link)
    transfers = Transfers(service)
    copy = transfers.working_copy(link)
    assert isinstance(copy.credentials, SshKey) and copy.url == url
    before = key_dirs()

    # not authorised yet: the message says so, names the URL, and points at the page
    with pytest.raises(AuthenticationFailed) as refused_key:
        await transfers.notebooks(link)
    message = str(refused_key.value)
    assert url in message and "deploy key" in message and "did not accept" in message
    assert refused_key.value.status == 403
    assert key_dirs() == before  # the key file went with the call

    sshd.authorize(link.public_key)
    listed = await transfers.notebooks(link)
    assert [n.path for n in listed] == ["notebooks/hr-diagram.ipynb", SKY]
    assert key_dirs() == before
    # the host's key was trusted on first use and recorded beside the working copy
    recorded = copy.known_hosts.read_text()
    assert sshd.host_public_key.split()[1] in recorded
    assert not copy.known_hosts.is_relative_to(copy.path)

    # a push, held by the server for a moment so its processes can be watched
    commit = await copy.commit({SKY: notebook("df.count() + 1\n")}, "Count again", AUTHOR)
    sshd.set_push_delay(1.0)
    stop, seen, dirs = threading.Event(), [], []
    sampler = threading.Thread(target=_sample, args=(stop, seen, dirs))
    sampler.start()
    try:
        pushed = await copy.push()
    finally:
        stop.set()
        sampler.join()
        sshd.set_push_delay(0)
    assert pushed.pushed and pushed.commit == commit
    head = sshd.log("analysis")[0]
    assert (head.sha, head.message.strip()) == (commit, "Count again")
    assert (head.author_name, head.author_email) == (AUTHOR.name, AUTHOR.email)
    assert sshd.read("analysis", SKY) == notebook("df.count() + 1\n").encode()
    assert any(c.startswith("git-receive-pack") for c in sshd.commands())

    # ssh was seen with the key's path, and no command line held the key itself
    cmdlines = [c.replace(b"\0", b" ") for c in seen]
    sshs = [c for c in cmdlines if b"IdentitiesOnly=yes" in c and b" -i " in c]
    assert sshs, f"no ssh process in {len(seen)} samples"
    assert all(b"StrictHostKeyChecking=accept-new" in c and b"-F /dev/null" in c for c in sshs)
    for cmdline in cmdlines:
        assert b"PRIVATE KEY" not in cmdline
        assert not any(line in cmdline for line in body_lines(private)), cmdline
    assert set(dirs) - before, "the key's temp dir was never seen during the push"
    assert key_dirs() == before  # and is gone after it

    # nothing of the key in the working copy's .git, the known_hosts file or the logs
    files = [p for p in (copy.path / ".git").rglob("*") if p.is_file()] + [copy.known_hosts]
    assert (copy.path / ".git" / "config") in files
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data and not any(line in data for line in body_lines(private))
    assert caplog.records and "PRIVATE KEY" not in caplog.text
    assert not any(line.decode() in caplog.text for line in body_lines(private))

    transfers.remove(link)
    assert not copy.path.exists() and not copy.known_hosts.exists()


@needs_sshd
async def test_an_unreachable_ssh_host_is_said_so(tmp_path: Path):
    private, public = generate("test")
    with refusing_port() as port:
        url = f"ssh://git@127.0.0.1:{port}/srv/repo.git"
        copy = WorkingCopy(tmp_path / "copy", url, credentials=SshKey(private, public))
        with pytest.raises(HostUnreachable, match="connection was refused") as raised:
            await copy.clone_or_fetch()
    assert url in str(raised.value)
    unknown = WorkingCopy(
        tmp_path / "other", "git@no-such-host.invalid:r.git", credentials=SshKey(private, public)
    )
    with pytest.raises(HostUnreachable, match="host name could not be found"):
        await unknown.clone_or_fetch()


@needs_sshd
async def test_a_changed_host_key_is_refused(tmp_path: Path):
    private, public = generate("test")
    with SshGitServer() as server:
        url = server.create_repo("analysis")
        server.authorize(public)
        copy = WorkingCopy(tmp_path / "copy", url, credentials=SshKey(private, public))
        await copy.clone_or_fetch()
        first = copy.known_hosts.read_text()
        server.restart()  # the same key again: still trusted
        await copy.clone_or_fetch()
        server.restart(new_host_key=True)
        with pytest.raises(GitSyncError, match="the host's key changed") as raised:
            await copy.clone_or_fetch()
        assert type(raised.value) is GitSyncError and url in str(raised.value)
        assert copy.known_hosts.read_text() == first  # the new key was not recorded

"""One local clone of a user's repository, driven through the system ``git`` CLI.

:class:`WorkingCopy` is asynchronous (asyncio subprocesses: the service runs on tornado)
and serialises its own operations with a lock. Every git call gets a controlled
environment, built from nothing rather than from ``os.environ``: a private HOME and
XDG_CONFIG_HOME, an empty global config and no system config (the machine's or the
user's git config cannot change what we do, e.g. an ``insteadOf`` or a credential
helper), ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C`` (we classify git's English messages),
only the https/http transports, and our askpass program, which answers git's Username
and Password prompts from two environment variables (see ``askpass``). The token is
therefore never in a URL, an argument, ``.git/config`` or a log line; ``-c
credential.helper=`` keeps any helper from storing it.

An SSH link's calls allow only the ssh transport and carry ``GIT_SSH_COMMAND``: ssh
with the link's deploy key, written for the one call that talks to the server into a
0600 file in a fresh 0700 temporary directory (removed when the call ends; never in
the working copy, never in an argument but its path), no ssh config (``-F
/dev/null``), no prompts (``BatchMode``), and the working copy's own known_hosts file
(`WorkingCopy.known_hosts`, beside the clone): the first connection trusts the host's
key and records it (``accept-new``), a later different key is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from . import askpass
from .errors import (
    AuthenticationFailed,
    BranchNotFound,
    GitSyncError,
    HostUnreachable,
    InvalidPath,
    MergeConflict,
    PathNotFound,
    PushRejected,
    RepositoryNotFound,
)
from .remote import Credentials, RemoteUrl, SshKey

log = logging.getLogger(__name__)

GIT = shutil.which("git") or "/usr/bin/git"

# Inherited from our own environment: how to reach the network and trust its certificates.
_PASSED_THROUGH = (
    "PATH",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)

# Given with -c on every call; none of them holds a secret.
_CONFIG = (
    "credential.helper=",  # an empty value resets the list: no helper stores or supplies tokens
    "core.hooksPath=/dev/null",  # never run hooks
    "gc.auto=0",  # no background gc outliving the call
    "maintenance.auto=false",
    "commit.gpgSign=false",
    "core.autocrlf=false",  # notebooks go back byte for byte
    "http.lowSpeedLimit=1",  # a server that stops answering ends the call within a minute
    "http.lowSpeedTime=60",
    "init.defaultBranch=main",
)

# the git calls that talk to the server: only they get an SSH link's key
_NETWORK_OPS = frozenset({"ls-remote", "clone", "fetch", "push"})
SSH = shutil.which("ssh") or "/usr/bin/ssh"

NOTEBOOK_SUFFIXES = (".ipynb", ".zpln", ".json")
_ZEPPELIN_JSON_LIMIT = 50 * 1024 * 1024  # larger .json files are not inspected
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


@dataclass(frozen=True)
class Author:
    """Who a commit is by (author and committer alike)."""

    name: str
    email: str

    def __post_init__(self) -> None:
        for value in (self.name, self.email):
            if not value.strip() or any(c in value for c in "<>\r\n\0"):
                raise ValueError(
                    f"an author's name and e-mail must be one line without <>: {value!r}"
                )

    def environment(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class NotebookEntry:
    """A notebook in the repository: its path, the id of its blob (changes when its
    content does), its size in bytes, and ``kind`` "jupyter" or "zeppelin"."""

    path: str
    blob: str
    size: int
    kind: str


@dataclass(frozen=True)
class SyncStatus:
    """How the local branch stands against the remote one, in commits."""

    branch: str
    url: str
    ahead: int
    behind: int

    @property
    def words(self) -> str:
        """The status as a sentence a user reads."""

        def commits(n: int) -> str:
            return f"{n} commit{'s' if n != 1 else ''}"

        where = f"'{self.branch}' of {self.url}"
        if not self.ahead and not self.behind:
            return f"Up to date with {where}."
        if self.ahead and not self.behind:
            return f"{commits(self.ahead)} to push to {where}."
        if self.behind and not self.ahead:
            return f"{commits(self.behind)} on {where} to pull."
        return (
            f"{commits(self.ahead)} to push and {commits(self.behind)} to pull: {where} has "
            "changed since your last pull, so pushing will bring those changes in first."
        )


@dataclass(frozen=True)
class PushResult:
    """What a push did: the branch and commit now on the remote, whether anything was
    pushed, and whether the user's commits were rebased onto the remote's first."""

    branch: str
    commit: str
    pushed: bool
    rebased: bool = False


@dataclass(frozen=True)
class _Run:
    returncode: int
    stdout: bytes
    stderr: str


def _check_branch(name: str) -> str:
    # git check-ref-format's rules, so a bad name fails here with a sentence, not in git
    if (
        not name
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
        or name == "@"
        or _BAD_REF.search(name)
        or any(part.startswith(".") for part in name.split("/"))
    ):
        raise InvalidPath(f"{name!r} cannot be the name of a Git branch.")
    return name


def _check_ref(ref: str | None) -> str | None:
    # a revision (branch, tag, commit id, HEAD~1) goes in as an argument: it must never
    # read as an option, nor hold the ':' that separates it from a path
    if ref is not None and (
        not ref or ref.startswith("-") or ":" in ref or any(ord(c) <= 0x20 for c in ref)
    ):
        raise InvalidPath(f"{ref!r} is not a branch, tag or commit name.")
    return ref


def _ref_safe(user: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", user)
    safe = re.sub(r"\.{2,}", ".", safe).strip(".-")
    safe = safe.removesuffix(".lock")[:40].strip(".-")
    return safe or "user"


def clean_path(path: str, *, folder: bool = False) -> str:
    """A repository-relative POSIX path, or InvalidPath: no absolute paths, ``..`` or
    ``.git``. With ``folder``, "" and "." mean the top of the repository (returned as "")."""
    if "\0" in path:
        raise InvalidPath("A path must not contain NUL characters.")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise InvalidPath(f"{path!r} is not a path inside the repository.")
    if any(part.lower() == ".git" for part in pure.parts):
        raise InvalidPath(f"{path!r} is inside .git, which may not be read or written.")
    text = "/".join(pure.parts)
    if not text and not folder:
        raise InvalidPath("Give a file's path inside the repository.")
    return text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    line = (fatal or lines or ["(no message)"])[-1]
    return re.sub(r"^(fatal|error):\s*", "", line, flags=re.IGNORECASE)


class WorkingCopy:
    """A local clone of one branch of one repository at ``path``.

    Every method is a coroutine running the system ``git``; they never run at the same
    time on one WorkingCopy. Errors are GitSyncError subclasses (errors.py) whose
    message names ``url`` and never the token. ``credentials`` may be None for a public
    repository; an SSH URL's are an `SshKey`. ``timeout`` bounds each git call (seconds).
    ``known_hosts`` is the SSH host keys file of this working copy (default: beside it,
    `known_hosts_of`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        url: str | RemoteUrl,
        branch: str = "main",
        credentials: Credentials | SshKey | None = None,
        *,
        timeout: float = 120.0,
        known_hosts: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path).absolute()  # git runs in other directories (clone: the parent)
        self.remote = url if isinstance(url, RemoteUrl) else RemoteUrl.parse(url)
        self.branch = _check_branch(branch)
        self.credentials = credentials
        self.timeout = timeout
        self.known_hosts = (
            Path(known_hosts).absolute() if known_hosts else self.known_hosts_of(self.path)
        )
        self._lock = asyncio.Lock()

    @staticmethod
    def known_hosts_of(path: str | os.PathLike[str]) -> Path:
        """The default known_hosts file of the working copy at ``path``: beside it (a
        clone needs its folder empty), ``.<name>.known_hosts``."""
        path = Path(path).absolute()
        return path.parent / f".{path.name}.known_hosts"

    def __repr__(self) -> str:
        return f"WorkingCopy({str(self.path)!r}, {self.url!r}, branch={self.branch!r})"

    @property
    def url(self) -> str:
        """The repository's URL, without credentials: safe to show and log."""
        return self.remote.url

    @property
    def _tracking(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    # ---- running git --------------------------------------------------------------

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        home = askpass.directory()
        env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            GIT_ALLOW_PROTOCOL="ssh" if self.remote.is_ssh else "https:http",
            GIT_LITERAL_PATHSPECS="1",  # a notebook called "*.ipynb" is just that file
            GIT_EDITOR="true",  # rebase and merge never wait for an editor
            GIT_SEQUENCE_EDITOR="true",
            GIT_MERGE_AUTOEDIT="no",
            LC_ALL="C",
            LANG="C",
        )
        creds = self.credentials if isinstance(self.credentials, Credentials) else None
        env.update(
            askpass.environment(
                home,
                "" if self.remote.is_ssh else urllib.parse.urlsplit(self.url).netloc,
                creds.username if creds else None,
                creds.token if creds else None,
            )
        )
        if extra:
            env.update(extra)
        return env

    def _ssh_command(self, key_file: Path | None) -> str:
        """``GIT_SSH_COMMAND``: ssh with the key file (if any), no config, no prompts,
        and this working copy's known_hosts. Paths only, never a secret."""
        options = [
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=20",
            "-F", "/dev/null",
        ]  # fmt: skip
        if key_file is not None:
            options = ["-i", str(key_file), *options]
        else:  # no key: offer none (not the machine's)
            options = ["-o", "IdentityFile=none", *options]
        return shlex.join([SSH, *options])

    @contextlib.contextmanager
    def _ssh_environment(self, op: str):
        """For an SSH link's call to the server: the key in a 0600 file in a new 0700
        directory, removed when the call ends, and ``GIT_SSH_COMMAND`` naming it."""
        if not self.remote.is_ssh:
            yield {}
            return
        key = self.credentials if isinstance(self.credentials, SshKey) else None
        if op not in _NETWORK_OPS or key is None:
            yield {"GIT_SSH_COMMAND": self._ssh_command(None), "GIT_SSH_VARIANT": "ssh"}
            return
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="aglais-sshkey-"))  # mode 0700
        try:
            key_file = directory / "id_ed25519"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(
                    key.private_key if key.private_key.endswith("\n") else key.private_key + "\n"
                )
            yield {"GIT_SSH_COMMAND": self._ssh_command(key_file), "GIT_SSH_VARIANT": "ssh"}
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _redact(self, text: str) -> str:
        creds = self.credentials
        if isinstance(creds, Credentials) and creds.token in text:
            text = text.replace(creds.token, "***")
        return text

    async def _git(
        self,
        *args: str,
        op: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> _Run:
        """Run ``git -c ... args`` in the working copy (or ``cwd``); raise the classified
        error when it fails and ``check``. Arguments never hold a secret, so they may be
        logged."""
        cwd = cwd or self.path
        log.debug("git %s (in %s)", " ".join(args), cwd)
        config = [item for pair in (("-c", c) for c in _CONFIG) for item in pair]
        with self._ssh_environment(op) as ssh_env:
            proc = await asyncio.create_subprocess_exec(
                GIT,
                *config,
                *args,
                cwd=cwd,
                env=self._environment({**ssh_env, **(env or {})}),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills git's helpers
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
            except BaseException as error:  # a timeout or a cancellation: leave no git behind
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                if isinstance(error, TimeoutError):
                    raise HostUnreachable(
                        f"The Git server for {self.url} did not finish answering within "
                        f"{self.timeout:g} seconds; try again later.",
                        self.url,
                    ) from None
                raise
        run = _Run(proc.returncode or 0, out, self._redact(err.decode("utf-8", "replace")))
        if check and run.returncode != 0:
            raise self._classify(op, run)
        return run

    def _classify(self, op: str, run: _Run) -> GitSyncError:
        """The error a failed git call means, from its stderr (and push's porcelain
        stdout). Order matters: 'unable to access ... returned error: 403' is about
        permission, not reachability. Sentences only, never git's own words, except as
        the last resort (redacted)."""
        url, branch = self.url, self.branch
        # URLs out first: a repository called "openssl-notes" is no TLS failure
        err = re.sub(r"[a-z][a-z0-9+.-]*://[^\s']*", "<url>", run.stderr.lower())
        out = self._redact(run.stdout.decode("utf-8", "replace"))
        # push --porcelain's verdict per ref is on stdout, only when the server answered
        if (
            op == "push"
            and "[rejected]" in out
            and ("fetch first" in out or "non-fast-forward" in out)
        ):
            return PushRejected(
                f"'{branch}' of {url} has changed since your last pull, so your commit "
                "was not pushed: pull the changes and push again.",
                url,
            )
        if op == "push" and "[remote rejected]" in out:
            reason = re.search(r"\[remote rejected\]\s*\(([^)]*)\)", out)
            return GitSyncError(
                f"The Git server for {url} refused the push to '{branch}'"
                f"{': ' + reason.group(1) if reason else ''}.",
                url,
            )
        if self.remote.is_ssh:
            found = self._ssh_problem(op, err)
            if found is not None:
                return found
        if "could not read username" in err or "could not read password" in err:
            if self.credentials is None:
                return AuthenticationFailed(
                    f"{url} asks for credentials: give a personal access token that may "
                    "read this repository.",
                    url,
                )
            return AuthenticationFailed(
                f"The token for {url} could not be handed to git (the askpass program did "
                "not run); this is a problem of the hub, please report it.",
                url,
            )
        if (
            "authentication failed" in err
            or "invalid username or password" in err
            or "invalid username or token" in err
            or "http basic: access denied" in err
            or "returned error: 401" in err
        ):
            return AuthenticationFailed(
                f"The Git server refused the token for {url}: check that it is the right "
                "token, that it has not expired and that it was made for this account.",
                url,
            )
        if (
            "returned error: 403" in err
            or ("permission to" in err and "denied" in err)
            or "write access to repository not granted" in err
        ):
            doing = "push to" if op == "push" else "read"
            return AuthenticationFailed(
                f"The token may not {doing} {url}: give it access to this repository"
                f"{' with write permission' if op == 'push' else ''}.",
                url,
            )
        if (
            "repository not found" in err
            or re.search(r"repository '[^']*' not found", err)
            or "returned error: 404" in err
            or "does not appear to be a git repository" in err
        ):
            return RepositoryNotFound(
                f"There is no repository at {url}, or the token cannot see it: check the "
                "URL and that the token has access to this repository.",
                url,
            )
        if "couldn't find remote ref" in err or re.search(r"remote branch .* not found", err):
            return BranchNotFound(f"The repository {url} has no branch '{branch}'.", url)
        unreachable = self._unreachable_reason(err)
        if unreachable:
            return HostUnreachable(f"Could not reach the Git server for {url}: {unreachable}.", url)
        return GitSyncError(f"git {op} failed for {url}: {_last_line(run.stderr)}", url)

    def _ssh_problem(self, op: str, err: str) -> GitSyncError | None:
        """What ssh's own messages (lowered) mean, or None when they are git's."""
        url, host = self.url, self.remote.host
        if "remote host identification has changed" in err or (
            "host key for" in err and "has changed" in err
        ):
            return GitSyncError(
                f"The SSH server for {url} answered with a different host key than when the "
                f"hub first connected to {host}: the host's key changed, so the connection "
                "was refused (someone may be intercepting it). If your Git host really "
                "changed its key, remove the link and link the repository again.",
                url,
            )
        if "host key verification failed" in err:
            return GitSyncError(
                f"The SSH host key of {host} could not be verified, so the hub did not "
                f"connect to {url}; try again, and report it if it persists.",
                url,
            )
        if "permission denied (publickey" in err or "permission denied (" in err:
            if not isinstance(self.credentials, SshKey):
                return AuthenticationFailed(
                    f"{url} asks for a key and this link has none: remove the link and "
                    "link the repository again to get a deploy key.",
                    url,
                )
            doing = "push to" if op == "push" else "read"
            return AuthenticationFailed(
                f"The SSH server for {url} did not accept this link's deploy key: add the "
                "public key shown on the link's page as a deploy key of the repository in "
                f"your Git host, with write access, so the hub may {doing} it.",
                url,
            )
        if "could not resolve hostname" in err or "name or service not known" in err:
            return HostUnreachable(
                f"Could not reach the Git server for {url}: its host name could not be "
                "found (is the URL right?).",
                url,
            )
        if "no route to host" in err or "network is unreachable" in err:
            return HostUnreachable(
                f"Could not reach the Git server for {url}: there is no route to its host "
                "from here.",
                url,
            )
        if "connection closed by" in err or "connection reset by" in err:
            if "could not read from remote repository" in err and "ssh:" in err:
                return HostUnreachable(
                    f"The SSH server for {url} closed the connection; try again later.",
                    url,
                )
        return None

    @staticmethod
    def _unreachable_reason(err: str) -> str | None:
        if "could not resolve host" in err or "could not resolve proxy" in err:
            return "its host name could not be found (is the URL right?)"
        if "connection refused" in err or "failed to connect" in err or "couldn't connect" in err:
            return "the connection was refused (is the host right, and is the server up?)"
        if "timed out" in err or "timeout was reached" in err or "too slow" in err:
            return "the connection timed out (is the host reachable from here?)"
        if "ssl" in err or "certificate" in err or "gnutls" in err:
            return "a secure (TLS) connection could not be made"
        status = re.search(r"returned error: (5\d\d)", err)
        if status:
            return f"the server answered with an error (HTTP {status.group(1)}); try again later"
        if "unable to access" in err:
            return "the connection failed"
        return None

    # ---- cloning and fetching -----------------------------------------------------

    async def remote_branches(self) -> list[str]:
        """The repository's branches, asked from the server (``git ls-remote``): also the
        probe that tells an unknown repository, a refused token and an unreachable
        host apart before anything is written."""
        home = askpass.directory()
        run = await self._git("ls-remote", "--heads", "--", self.url, op="ls-remote", cwd=home)
        branches = []
        for line in run.stdout.decode("utf-8", "replace").splitlines():
            _, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                branches.append(ref.removeprefix("refs/heads/"))
        return branches

    async def clone_or_fetch(self) -> None:
        """Clone the branch into ``path`` (which must be missing or empty), or, when it
        is already a clone, fetch the branch and fast-forward to it if there are no
        local commits to push (those are kept; ``status`` tells)."""
        async with self._lock:
            if (self.path / ".git").is_dir():
                await self._update()
            else:
                await self._clone()

    async def _clone(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise GitSyncError(
                f"Cannot clone {self.url} into {self.path}: that folder is not empty.", self.url
            )
        branches = await self.remote_branches()
        if self.branch not in branches:
            raise self._no_such_branch(branches)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._git(
            "clone",
            "--quiet",
            "--single-branch",
            "--no-tags",
            "--branch",
            self.branch,
            "--",
            self.url,
            str(self.path),
            op="clone",
            cwd=self.path.parent,
        )

    def _no_such_branch(self, branches: Sequence[str]) -> BranchNotFound:
        if not branches:
            return BranchNotFound(
                f"The repository {self.url} is empty: it has no branch '{self.branch}' "
                "yet. Push a first commit to it, then link it.",
                self.url,
            )
        shown = ", ".join(sorted(branches)[:10]) + (", ..." if len(branches) > 10 else "")
        return BranchNotFound(
            f"The repository {self.url} has no branch '{self.branch}' (its branches: {shown}).",
            self.url,
        )

    async def _update(self) -> None:
        await self._abort_unfinished()
        current = await self._git("config", "--get", "remote.origin.url", op="config", check=False)
        if current.returncode != 0:
            await self._git("remote", "add", "origin", self.url, op="config")
        elif current.stdout.decode().strip() != self.url:
            await self._git("remote", "set-url", "origin", self.url, op="config")
        refspec = f"+refs/heads/{self.branch}:{self._tracking}"
        await self._git("config", "remote.origin.fetch", refspec, op="config")
        await self._fetch()
        local = await self._git(
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/heads/{self.branch}",
            op="rev-parse",
            check=False,
        )
        if local.returncode != 0:
            await self._git(
                "checkout",
                "--quiet",
                "-b",
                self.branch,
                "--track",
                f"origin/{self.branch}",
                op="checkout",
            )
        else:
            await self._git("checkout", "--quiet", self.branch, op="checkout")
        ahead, behind = await self._counts()
        if behind and not ahead:
            await self._git("merge", "--quiet", "--ff-only", self._tracking, op="merge")

    async def _abort_unfinished(self) -> None:
        # a rebase interrupted (by a crash or a kill) would block every later operation
        git_dir = self.path / ".git"
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            await self._git("rebase", "--abort", op="rebase", check=False)

    async def _fetch(self) -> None:
        await self._git(
            "fetch",
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{self.branch}:{self._tracking}",
            op="fetch",
        )

    def _require_clone(self) -> None:
        if not (self.path / ".git").is_dir():
            raise GitSyncError(
                f"{self.url} is not cloned into {self.path} yet: link it first.", self.url
            )

    # ---- reading ------------------------------------------------------------------

    async def list_notebooks(self, folder: str = "", ref: str | None = None) -> list[NotebookEntry]:
        """The notebooks under ``folder`` ("" for all) at ``ref`` (default: the remote
        branch as last fetched), sorted by path: ``.ipynb`` (jupyter), ``.zpln`` and
        Zeppelin notes saved as ``.json`` (zeppelin; other .json files are left out)."""
        folder, ref = clean_path(folder, folder=True), _check_ref(ref)
        async with self._lock:
            self._require_clone()
            args = ["ls-tree", "-r", "-z", "--long", "--full-tree", ref or self._tracking]
            if folder:
                args += ["--", folder]
            run = await self._git(*args, op="ls-tree")
            entries: list[tuple[str, str, int]] = []
            for record in run.stdout.decode("utf-8", "replace").split("\0"):
                if not record:
                    continue
                meta, _, path = record.partition("\t")
                mode, kind, blob, size = meta.split()
                if kind != "blob" or mode == "120000":  # not submodules, not symbolic links
                    continue
                if folder and not path.startswith(folder + "/"):
                    continue  # "notes" must not match "notes-old/x.ipynb"
                if path.lower().endswith(NOTEBOOK_SUFFIXES):
                    entries.append((path, blob, int(size)))
            candidates = [
                blob
                for path, blob, size in entries
                if path.lower().endswith(".json") and size <= _ZEPPELIN_JSON_LIMIT
            ]
            zeppelin = await self._zeppelin_blobs(candidates)
        notebooks = []
        for path, blob, size in entries:
            lower = path.lower()
            if lower.endswith(".ipynb"):
                notebooks.append(NotebookEntry(path, blob, size, "jupyter"))
            elif lower.endswith(".zpln") or blob in zeppelin:
                notebooks.append(NotebookEntry(path, blob, size, "zeppelin"))
        return sorted(notebooks, key=lambda n: n.path)

    async def _zeppelin_blobs(self, blobs: Sequence[str]) -> set[str]:
        """Which of these .json blobs are Zeppelin notes (an object with a list of
        ``paragraphs``), read in one ``git cat-file --batch``."""
        if not blobs:
            return set()
        unique = list(dict.fromkeys(blobs))
        run = await self._git(
            "cat-file", "--batch", op="cat-file", stdin="".join(b + "\n" for b in unique).encode()
        )
        found, data, pos = set(), run.stdout, 0
        for blob in unique:
            header_end = data.index(b"\n", pos)
            header = data[pos:header_end].split()
            size = int(header[2]) if len(header) == 3 else 0
            content = data[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1 if len(header) == 3 else header_end + 1
            with contextlib.suppress(ValueError):
                note = json.loads(content)
                if isinstance(note, dict) and isinstance(note.get("paragraphs"), list):
                    found.add(blob)
        return found

    async def read_file(self, path: str, ref: str | None = None) -> bytes:
        """The content of ``path`` at ``ref`` (default: the remote branch as last
        fetched), or PathNotFound."""
        path, ref = clean_path(path), _check_ref(ref)
        async with self._lock:
            self._require_clone()
            run = await self._git(
                "cat-file", "blob", f"{ref or self._tracking}:{path}", op="cat-file", check=False
            )
        if run.returncode != 0:
            raise PathNotFound(
                f"There is no file {path} on '{self.branch}' of {self.url}.", self.url
            )
        return run.stdout

    async def status(self, fetch: bool = True) -> SyncStatus:
        """Commits to push and to pull, after fetching (unless ``fetch`` is False)."""
        async with self._lock:
            self._require_clone()
            if fetch:
                await self._fetch()
            ahead, behind = await self._counts()
        return SyncStatus(self.branch, self.url, ahead, behind)

    async def _counts(self) -> tuple[int, int]:
        run = await self._git(
            "rev-list", "--left-right", "--count", f"HEAD...{self._tracking}", op="rev-list"
        )
        ahead, behind = run.stdout.split()
        return int(ahead), int(behind)

    async def _head(self) -> str:
        return (await self._git("rev-parse", "HEAD", op="rev-parse")).stdout.decode().strip()

    async def remote_head(self) -> str:
        """The commit id of the remote branch as last fetched (what imports read)."""
        async with self._lock:
            self._require_clone()
            run = await self._git("rev-parse", self._tracking, op="rev-parse")
        return run.stdout.decode().strip()

    # ---- writing ------------------------------------------------------------------

    def _target(self, path: str) -> Path:
        # a symbolic link in the clone (the repository's content) must not let a write
        # land outside it
        root = self.path.resolve()
        target = self.path / path
        if target.is_symlink() or not target.parent.resolve().is_relative_to(root):
            raise InvalidPath(f"{path} goes through a symbolic link; it cannot be written.")
        return target

    async def commit(
        self,
        files: Mapping[str, bytes | str],
        message: str,
        author: Author,
        base: str | None = None,
    ) -> str | None:
        """Write ``files`` (repository path → content; str is written as UTF-8) into the
        working copy and commit them with ``message``, by ``author`` (author and
        committer). Returns the new commit's id, or None when nothing changed.

        ``base`` is the commit the user's versions were edited from (their import's).
        The commit is then made on it, not on the newest remote commit, so that changes
        made on the remote since are merged by `pull_and_retry` (or conflict there)
        instead of being silently overwritten; the push of such a commit is rejected
        until then. Local commits not pushed yet leave the branch (the user's server
        still has their notebooks)."""
        if not message.strip():
            raise GitSyncError("Give a message saying what the commit changes.", self.url)
        if not files:
            return None
        cleaned = {clean_path(path): content for path, content in files.items()}
        async with self._lock:
            self._require_clone()
            if base is not None:
                await self._move_to(base)
            targets = {path: self._target(path) for path in cleaned}  # all checked, then written
            for path, content in cleaned.items():
                targets[path].parent.mkdir(parents=True, exist_ok=True)
                targets[path].write_bytes(content.encode() if isinstance(content, str) else content)
            await self._git("add", "--", *cleaned, op="add")
            staged = await self._git("diff", "--cached", "--quiet", op="diff", check=False)
            if staged.returncode == 0:
                return None
            await self._git(
                "commit",
                "--quiet",
                "--no-verify",
                "--file=-",
                op="commit",
                env=author.environment(),
                stdin=message.encode(),
            )
            return await self._head()

    async def _move_to(self, base: str) -> None:
        found = await self._git(
            "rev-parse", "--verify", "--quiet", f"{_check_ref(base)}^{{commit}}",
            op="rev-parse", check=False,
        )  # fmt: skip
        if found.returncode != 0:
            raise GitSyncError(
                f"The commit your notebooks were imported from ({base[:12]}) is no longer on "
                f"'{self.branch}' of {self.url} (the branch was rewritten): import them "
                "again, then commit.",
                self.url,
            )
        # --force: the clone's files are ours (written for a commit), never the user's
        await self._git("checkout", "--quiet", "--force", "-B", self.branch, base, op="checkout")

    async def push(self) -> PushResult:
        """Push the branch's local commits; PushRejected when the remote branch moved."""
        async with self._lock:
            self._require_clone()
            return await self._push(rebased=False)

    async def _push(self, rebased: bool) -> PushResult:
        ahead, _ = await self._counts()
        head = await self._head()
        if not ahead:
            return PushResult(self.branch, head, pushed=False, rebased=rebased)
        ref = f"refs/heads/{self.branch}"
        await self._git("push", "--porcelain", "--quiet", "origin", f"{ref}:{ref}", op="push")
        return PushResult(self.branch, head, pushed=True, rebased=rebased)

    async def pull_and_retry(self, user: str, committer: Author, attempts: int = 3) -> PushResult:
        """Bring the remote's new commits in and push: fetch, rebase the local commits
        onto the remote branch, push (again, up to ``attempts`` times, if it moved once
        more meanwhile).

        When the rebase conflicts it is aborted, the user's commits are pushed to a new
        branch ``aglais/<user>/<UTC timestamp>`` (kept locally too) and MergeConflict
        names it; the remote branch is left as it was and the local one is reset to it,
        so the working copy matches the remote again. ``committer`` signs the rebased
        commits (their authors are kept).
        """
        async with self._lock:
            self._require_clone()
            for _ in range(attempts):
                await self._fetch()
                ahead, behind = await self._counts()
                if not ahead:
                    if behind:
                        await self._git("merge", "--quiet", "--ff-only", self._tracking, op="merge")
                    return PushResult(self.branch, await self._head(), pushed=False)
                if behind:
                    conflicts = await self._rebase(committer)
                    if conflicts is not None:
                        saved = await self._save_aside(user)
                        raise self._conflict(saved, conflicts)
                try:
                    return await self._push(rebased=bool(behind))
                except PushRejected:
                    continue  # the remote moved again between our fetch and our push
            raise PushRejected(
                f"'{self.branch}' of {self.url} kept changing while we tried to push; "
                "try again in a moment.",
                self.url,
            )

    async def _rebase(self, committer: Author) -> list[str] | None:
        """Rebase onto the remote branch: None when it worked, else the conflicting
        paths (the rebase is aborted, the local commits are as before)."""
        run = await self._git(
            "rebase",
            "--quiet",
            self._tracking,
            op="rebase",
            env=committer.environment(),
            check=False,
        )
        if run.returncode == 0:
            return None
        unmerged = await self._git(
            "diff", "--name-only", "--diff-filter=U", "-z", op="diff", check=False
        )
        paths = [p for p in unmerged.stdout.decode("utf-8", "replace").split("\0") if p]
        await self._git("rebase", "--abort", op="rebase")
        if not paths:
            raise GitSyncError(
                f"Could not bring the changes on '{self.branch}' of {self.url} together "
                f"with yours: {_last_line(run.stderr)}. Your commits are kept.",
                self.url,
            )
        return paths

    async def _save_aside(self, user: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = f"aglais/{_ref_safe(user)}/{stamp}"
        for n in range(1, 10):
            name = base if n == 1 else f"{base}-{n}"
            try:
                await self._git(
                    "push", "--porcelain", "--quiet", "origin", f"HEAD:refs/heads/{name}", op="push"
                )
            except PushRejected:
                continue  # that name is taken: the next one
            # only once the user's version is safely on the server does the local branch
            # go back to the remote's
            await self._git("branch", "--force", name, "HEAD", op="branch")
            await self._git("reset", "--quiet", "--hard", self._tracking, op="reset")
            return name
        raise GitSyncError(
            f"Could not find a free branch name to save your version on {self.url}; your "
            "commits are kept in the hub's copy.",
            self.url,
        )

    def _conflict(self, saved: str, paths: list[str]) -> MergeConflict:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        return MergeConflict(
            f"Your changes to {shown} conflict with changes made to '{self.branch}' of "
            f"{self.url} since your last pull. Your version is saved on the branch "
            f"'{saved}' of that repository and '{self.branch}' is left as it was: merge "
            "the two there, or import the current version and redo your changes.",
            self.url,
            saved_branch=saved,
            paths=paths,
        )

"""A real Git server for tests: OURS, a thin HTTP front to git's own ``git http-backend``,
which does the whole Git protocol (smart HTTP, v0 and v2, fetch and push).

Our part is only the HTTP: a ThreadingHTTPServer on 127.0.0.1 at a free port (bound
to port 0), HTTP Basic authentication against a users → tokens table (every request,
reads too, as for a private repository; a wrong token gets a 401 as GitHub's does),
and running ``/usr/lib/git-core/git-http-backend`` as a CGI per request with the usual
variables (GIT_PROJECT_ROOT, GIT_HTTP_EXPORT_ALL, PATH_INFO, QUERY_STRING,
REQUEST_METHOD, CONTENT_TYPE, CONTENT_LENGTH, REMOTE_USER, and the request's
Content-Encoding and Git-Protocol headers passed through, so gzip'd bodies and protocol
v2 work). Chunked request bodies (git sends large pushes that way) are de-chunked first.
Pushes are allowed to authenticated users (``http.receivepack`` is on in every
repository). Every request's method, target (path and query) and user is recorded in
``requests``, so a test can assert what never appeared in a URL; ``push_delay`` holds
each push's pack upload for that many seconds, so a test can watch a push in flight.

The test side works on the bare repositories directly, as a collaborator on the server
would: ``create_repo`` (an initial commit of a couple of notebooks), ``commit`` (a
concurrent change), ``log``, ``read`` and ``branches``. Used as a context manager it
starts and stops cleanly: ``stop`` waits for requests in flight, and the temp dir it
made is removed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
GIT = shutil.which("git") or "/usr/bin/git"
ZERO = "0" * 40

COLLABORATOR = ("Bob Collaborator", "bob@example.org")


def notebook(*sources: str) -> str:
    """A small Jupyter notebook (nbformat 4) with one code cell per source, written as
    Jupyter writes it (indent 1, a line per key), so git merges it line by line."""
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{n}",
            "metadata": {},
            "outputs": [],
            "source": source.splitlines(keepends=True),
        }
        for n, source in enumerate(sources)
    ]
    document = {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document, indent=1) + "\n"


# The initial commit: two notebooks and two files that are not notebooks.
DEFAULT_FILES: dict[str, str] = {
    "README.md": "# Analysis notebooks\n",
    "notebooks/sky-counts.ipynb": notebook(
        "df = spark.read.parquet('/data/gaia/dr3')\n", "df.count()\n"
    ),
    "notebooks/hr-diagram.ipynb": notebook(
        "import matplotlib.pyplot as plt\n", "plt.scatter(bp_rp, abs_g)\n"
    ),
    "notebooks/params.json": json.dumps({"radius": 0.5}) + "\n",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: ``target`` is the path with its query string,
    exactly as sent; ``user`` the authenticated user, or None; ``body`` how it came
    ("", "chunked", "gzip" or "chunked+gzip")."""

    method: str
    target: str
    user: str | None
    status: int
    body: str = ""


@dataclass(frozen=True)
class Commit:
    """A commit as ``git log`` shows it."""

    sha: str
    author_name: str
    author_email: str
    committer_name: str
    committer_email: str
    message: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: the CGI's length is unknown

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read ``requests`` instead

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, token = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.server.owner.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            return None
        return user

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _refuse(self, status: int, user: str | None) -> None:
        self.server.owner._record(self.command, self.path, user, status)
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="aglais test git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self) -> None:
        owner = self.server.owner
        user = self._user()
        if user is None:
            return self._refuse(401, None)
        parts = urllib.parse.urlsplit(self.path)
        pushing = parts.path.endswith("/git-receive-pack") or "service=git-receive-pack" in (
            parts.query
        )
        if pushing and user in owner.read_only:
            return self._refuse(403, user)  # as a read-only token gets from a forge
        body = self._body() if self.command == "POST" else b""
        if parts.path.endswith("/git-receive-pack") and owner.push_delay:
            time.sleep(owner.push_delay)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(owner.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(owner.repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(parts.path),
            "QUERY_STRING": parts.query,
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        backend = subprocess.run(
            [HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=120
        )
        head, sep, payload = backend.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = backend.stdout.partition(b"\n\n")
        status, reason, headers = 200, "OK", []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                code, _, reason = value.strip().partition(" ")
                status = int(code)
            elif name:
                headers.append((name.strip(), value.strip()))
        if not sep:  # the backend failed before writing headers
            status, reason, headers, payload = 500, "Backend Failed", [], backend.stderr
        encodings = [
            "chunked" if "chunked" in self.headers.get("Transfer-Encoding", "").lower() else "",
            self.headers.get("Content-Encoding", ""),
        ]
        owner._record(self.command, self.path, user, status, "+".join(e for e in encodings if e))
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    owner: GitServer

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # a client that hung up is no news


class GitServer:
    """A Git smart-HTTP server on 127.0.0.1 (see the module's docstring).

    ``users`` maps user names to their tokens; those in ``read_only`` may fetch but get
    403 for a push. ``root`` holds the bare repositories
    (under ``repos/``); by default a temp dir, removed by ``stop``.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        root: str | os.PathLike[str] | None = None,
        read_only: Collection[str] = (),
    ) -> None:
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="aglais-gitserver-"))
        self.repos = self.root / "repos"
        self.repos.mkdir(parents=True, exist_ok=True)
        self.users = dict(users)
        self.read_only = set(read_only)
        self.requests: list[RecordedRequest] = []
        self.push_delay = 0.0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- the server -------------------------------------------------------------

    def start(self) -> GitServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)  # port 0: the kernel picks a free one
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gitserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        """The URL git clones repository ``name`` from."""
        return f"{self.base_url}/{name}.git"

    def _record(
        self, method: str, target: str, user: str | None, status: int, body: str = ""
    ) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, target, user, status, body))

    # ---- the repositories, as seen on the server -----------------------------------

    def _env(self) -> dict[str, str]:
        # the machine's git config must not change the repositories the tests look at
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }

    def _git(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> str:
        done = subprocess.run(
            [GIT, "--git-dir", str(self.repos / f"{name}.git"), *args],
            input=input,
            env={**self._env(), **(env or {})},
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} in {name}: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def create_repo(
        self,
        name: str,
        files: Mapping[str, str | bytes] | None = None,
        branch: str = "main",
        message: str = "Initial notebooks",
        author: tuple[str, str] = COLLABORATOR,
    ) -> str:
        """A bare repository with one commit of ``files`` (default: DEFAULT_FILES) on
        ``branch``, which is its HEAD; returns its URL."""
        path = self.repos / f"{name}.git"
        subprocess.run(
            [GIT, "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)],
            env=self._env(),
            check=True,
        )
        self._git(name, "config", "http.receivepack", "true")
        self.commit(name, DEFAULT_FILES if files is None else files, message, author, branch)
        return self.url(name)

    def commit(
        self,
        name: str,
        files: Mapping[str, str | bytes | None],
        message: str,
        author: tuple[str, str] = COLLABORATOR,
        branch: str = "main",
    ) -> str:
        """Commit ``files`` (path → content, None deletes) on ``branch`` of the bare
        repository, on top of what is there, as a collaborator pushing meanwhile would;
        returns the commit's id. Uses a private index: the bare repository has no
        working tree."""
        with tempfile.TemporaryDirectory(prefix="aglais-gitserver-index-") as tmp:
            env = {
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                "GIT_AUTHOR_NAME": author[0],
                "GIT_AUTHOR_EMAIL": author[1],
                "GIT_COMMITTER_NAME": author[0],
                "GIT_COMMITTER_EMAIL": author[1],
            }
            ref = f"refs/heads/{branch}"
            try:
                parent = self._git(name, "rev-parse", "--verify", "--quiet", ref).strip()
            except RuntimeError:
                parent = ""
            if parent:
                self._git(name, "read-tree", parent, env=env)
            for path, content in files.items():
                if content is None:
                    self._git(name, "update-index", "--force-remove", "--", path, env=env)
                    continue
                data = content.encode() if isinstance(content, str) else content
                blob = self._git(name, "hash-object", "-w", "--stdin", input=data).strip()
                self._git(
                    name, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env
                )
            tree = self._git(name, "write-tree", env=env).strip()
            args = ["commit-tree", tree, "-F", "-"] + (["-p", parent] if parent else [])
            sha = self._git(name, *args, env=env, input=message.encode()).strip()
            self._git(name, "update-ref", ref, sha, parent or ZERO)
            return sha

    def log(self, name: str, branch: str = "main") -> list[Commit]:
        """The commits of ``branch``, newest first."""
        out = self._git(
            name,
            "log",
            "-z",
            "--format=%H%x00%an%x00%ae%x00%cn%x00%ce%x00%B",
            f"refs/heads/{branch}",
        )
        fields = out.split("\0")
        return [
            Commit(*fields[i : i + 5], message=fields[i + 5].strip())
            for i in range(0, len(fields) - 5, 6)
        ]

    def read(self, name: str, path: str, branch: str = "main") -> bytes:
        """The content of ``path`` on ``branch``."""
        git_dir = str(self.repos / f"{name}.git")
        blob = f"refs/heads/{branch}:{path}"
        done = subprocess.run(
            [GIT, "--git-dir", git_dir, "cat-file", "blob", blob],
            env=self._env(),
            capture_output=True,
            check=True,
        )
        return done.stdout  # raw bytes (_git decodes)

    def delete_branch(self, name: str, branch: str) -> None:
        """Delete ``branch``, as a collaborator cleaning up would."""
        self._git(name, "update-ref", "-d", f"refs/heads/{branch}")

    def branches(self, name: str) -> list[str]:
        """The repository's branches."""
        out = self._git(name, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return out.split()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nothing else takes it while
    the test runs) but never listening."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
    finally:
        holder.close()

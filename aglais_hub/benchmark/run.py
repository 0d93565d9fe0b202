"""A benchmark run: every user at once (asyncio), each user's notebooks one after another
in suite order, on the user's default server (started if it does not run, and then
stopped at the end).

First every token is checked with the hub (an unreachable hub or a refused token stops
the run before any server starts: `RunRefused`); then each user's server is started and a
driver opened on it; a user whose server does not start gets an ERROR for each notebook.
A progress line is said as each notebook finishes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient

from . import jupyter
from .driver import Driver, DriverError, DriverFactory, Notebook, NotebookRun
from .hub import DEFAULT_START_TIMEOUT, HubError, UserHub
from .suite import NotebookEntry, check_outputs, printed_values
from .verdict import DEFAULT_SLOW_FACTOR, Judgement, Verdict, judge

DEFAULT_TIMEOUT = 900.0  # per notebook: generous, a busy shared cluster is slow


class RunRefused(Exception):
    """The run cannot start: the hub does not answer or refuses tokens (one line each)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class UserToken:
    """A user of the run and their hub API token."""

    name: str
    token: str


@dataclass(frozen=True)
class Plan:
    """What to run: the users, the notebooks (in suite order) and the limits."""

    hub_url: str
    users: tuple[UserToken, ...]
    notebooks: tuple[tuple[NotebookEntry, Notebook], ...]
    run_id: str
    slow_factor: float = DEFAULT_SLOW_FACTOR
    timeout: float = DEFAULT_TIMEOUT
    start_timeout: float = DEFAULT_START_TIMEOUT


@dataclass(frozen=True)
class Result:
    """One notebook of one user: the verdict and what it rests on. ``run`` is None when the
    notebook could not run at all (the server did not start)."""

    user: str
    entry: NotebookEntry
    judgement: Judgement
    seconds: float
    errors: tuple[str, ...]
    differences: tuple[str, ...]
    run: NotebookRun | None
    began: float | None = None  # seconds after the run began that it started (timeline)

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict


@dataclass(frozen=True)
class ServerStart:
    """How a user's server start went, for the timeline: from ``began`` (seconds after
    the run began) for ``seconds``; ``state`` is started, already running or failed."""

    user: str
    began: float
    seconds: float
    state: str


@dataclass
class Outcome:
    """A finished run: its plan, results (users in plan order, each in suite order),
    the servers' starts, cleanup warnings and wall-clock times."""

    plan: Plan
    results: list[Result]
    warnings: list[str] = field(default_factory=list)
    server_starts: list[ServerStart] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None


def new_run_id() -> str:
    """A run id that sorts by time and does not collide: ``20250131-142233-9f3a1c``."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def result_of(
    user: str,
    entry: NotebookEntry,
    run: NotebookRun,
    slow_factor: float,
    began: float | None = None,
) -> Result:
    """The result of ``run`` against ``entry`` (started ``began`` seconds into the run):
    its outputs checked by the suite's own checks, then judged. Pure."""
    shown = run.outputs()
    errors = tuple(run.errors())
    differences = tuple(check_outputs(entry, printed_values(shown.stdout), shown.figures))
    judgement = judge(entry, run.seconds, errors, differences, slow_factor)
    return Result(user, entry, judgement, run.seconds, errors, differences, run, began)


def failed_result(user: str, entry: NotebookEntry, message: str) -> Result:
    """An ERROR for a notebook that could not run at all. Pure."""
    return Result(user, entry, Judgement(Verdict.ERROR, message), 0.0, (message,), (), None)


def progress_line(result: Result) -> str:
    """``[alice] 02-sky-counts.ipynb PASS 14.2 s (expected 20 s)``, and why unless PASS."""
    line = (
        f"[{result.user}] {result.entry.name} {result.verdict} {result.seconds:.1f} s "
        f"(expected {result.entry.seconds:g} s)"
    )
    return f"{line}: {result.judgement.detail}" if result.judgement.detail else line


async def check_tokens(http: AsyncHTTPClient, plan: Plan) -> None:
    """Ask the hub whose each token is, all at once; RunRefused with every problem."""
    hubs = [UserHub(http, plan.hub_url, user.name, user.token) for user in plan.users]
    answers = await asyncio.gather(*(hub.whoami() for hub in hubs), return_exceptions=True)
    problems = []
    for answer in answers:
        if isinstance(answer, HubError):
            if str(answer) not in problems:  # an unreachable hub: said once
                problems.append(str(answer))
        elif isinstance(answer, BaseException):
            raise answer
    if problems:
        raise RunRefused(problems)


async def run_user(
    http: AsyncHTTPClient,
    plan: Plan,
    user: UserToken,
    say: Callable[[str], None],
    open_driver: DriverFactory,
    outcome: Outcome,
    origin: float,
) -> list[Result]:
    """One user's notebooks in suite order; the server is left as it was found. Times
    go into the timeline as seconds after ``origin`` (the run's monotonic start)."""
    entries = [entry for entry, _ in plan.notebooks]
    warnings = outcome.warnings
    hub = UserHub(http, plan.hub_url, user.name, user.token)
    began = time.monotonic()
    say(f"[{user.name}] starting the server")

    def started(state: str) -> None:
        outcome.server_starts.append(
            ServerStart(user.name, began - origin, time.monotonic() - began, state)
        )

    try:
        server = await hub.start_server(plan.start_timeout)
    except HubError as error:
        started("failed")
        say(f"[{user.name}] {error}")
        return [failed_result(user.name, entry, str(error)) for entry in entries]
    started("started" if server.started else "already running")
    state = "ready" if server.started else "already running"
    say(f"[{user.name}] server {state} after {time.monotonic() - began:.1f} s: {server.url}")
    results: list[Result] = []

    def warn(message: str) -> None:
        warnings.append(f"[{user.name}] {message}")
        say(f"[{user.name}] warning: {message}")

    driver: Driver | None = None
    try:
        driver = await open_driver(server, http, plan.run_id)
        for entry, notebook in plan.notebooks:
            at = time.monotonic() - origin
            run = await driver.run_notebook(notebook, plan.timeout)
            for message in run.warnings:
                warn(message)
            result = result_of(user.name, entry, run, plan.slow_factor, at)
            results.append(result)
            say(progress_line(result))
    except (DriverError, HubError) as error:
        say(f"[{user.name}] {error}")
        results += [failed_result(user.name, e, str(error)) for e in entries[len(results) :]]
    finally:
        if driver is not None:
            for message in await driver.close():
                warn(message)
        if server.started:
            problem = await hub.stop_server()
            if problem:
                warn(problem)
            else:
                say(f"[{user.name}] server stopped")
    return results


async def run_benchmark(
    plan: Plan,
    say: Callable[[str], None] = print,
    open_driver: DriverFactory = jupyter.open_driver,
) -> Outcome:
    """Run ``plan``; RunRefused before any server starts when the hub or a token is
    refused. ``open_driver`` opens the driver of the servers' flavour (Jupyter's)."""
    outcome = Outcome(plan, [])
    origin = time.monotonic()
    # each user holds a progress stream and a request at a time; tornado's default of 10
    # connections would queue (and time out) users past the fifth
    http = AsyncHTTPClient(force_instance=True, max_clients=10 + 2 * len(plan.users))
    try:
        await check_tokens(http, plan)
        # a task group: if one user's task breaks (or Ctrl-C), the others are cancelled
        # and clean up (kernels, files, servers) before the client closes
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(run_user(http, plan, user, say, open_driver, outcome, origin))
                for user in plan.users
            ]
    finally:
        http.close()
    outcome.results = [result for task in tasks for result in task.result()]
    outcome.finished = datetime.now(UTC)
    return outcome

"""A benchmark run: every user at once (asyncio), each user's notebooks one after another
in suite order, on one server of the user's: the default server; with ``Plan.size`` a
booking of that size made for the run (its server ``r<id>``, the booking cancelled at the
end whatever happens); with ``Plan.bookings`` the user's own active booking among them. A
server that was not running is started, and stopped again at the end.

First every token is checked with the hub, then (for a size or bookings) the reservation
service, the size or each listed booking: an unreachable hub, a refused token, a hub
without the service, an unknown size or a booking that is not the user's or not active
stops the run before anything is booked or started (`RunRefused`). Then each user's
booking is made and server started and a driver opened on it; a user whose booking is
refused or whose server does not start gets an ERROR for each notebook, and the other
users go on. A progress line is said as each notebook finishes.
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
from .booking import (
    Booking,
    BookingError,
    ReservationClient,
    booking_window,
    choose_bookings,
    iso,
    run_title,
    size_problem,
)
from .driver import Driver, DriverError, DriverFactory, Notebook, NotebookRun
from .hub import DEFAULT_START_TIMEOUT, HubError, UserHub
from .suite import NotebookEntry, check_outputs, printed_values
from .verdict import DEFAULT_SLOW_FACTOR, Judgement, Verdict, judge

DEFAULT_TIMEOUT = 900.0  # per notebook: generous, a busy shared cluster is slow


class RunRefused(Exception):
    """The run cannot start: the hub does not answer or refuses tokens, the reservation
    service refuses the size or the bookings (one line each)."""

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
    """What to run: the users, the notebooks (in suite order), the limits, and where:
    each user's default server, or a booking of ``size`` for ``minutes`` made for the
    run, or each user's own booking among ``bookings``."""

    hub_url: str
    users: tuple[UserToken, ...]
    notebooks: tuple[tuple[NotebookEntry, Notebook], ...]
    run_id: str
    slow_factor: float = DEFAULT_SLOW_FACTOR
    timeout: float = DEFAULT_TIMEOUT
    start_timeout: float = DEFAULT_START_TIMEOUT
    size: str | None = None
    minutes: int | None = None
    bookings: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where a user's notebooks ran: the server's name ("" for the default server) and,
    on a booking's server, the booking and its size (a refused booking: the size only)."""

    server_name: str = ""
    booking: int | None = None
    size: str | None = None

    @classmethod
    def of(cls, booking: Booking) -> Placement:
        return cls(booking.server_name, booking.id, booking.size)

    def label(self) -> str:
        """``the default server``, ``r12 (booking 12, small)``, ``no server (small)``."""
        if self.booking is not None:
            return f"{self.server_name} (booking {self.booking}, {self.size})"
        if self.server_name:
            return self.server_name
        return f"no server ({self.size})" if self.size else "the default server"


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
    placement: Placement = Placement()  # the server it ran on

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict


@dataclass(frozen=True)
class ServerStart:
    """How a user's server start went, for the timeline: from ``began`` (seconds after
    the run began) for ``seconds``; ``state`` is started, already running or failed;
    ``server_name`` is the server's ("" for the default server)."""

    user: str
    began: float
    seconds: float
    state: str
    server_name: str = ""


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
    placement: Placement = Placement(),
) -> Result:
    """The result of ``run`` against ``entry`` (started ``began`` seconds into the run, on
    ``placement``): its outputs checked by the suite's own checks, then judged. Pure."""
    shown = run.outputs()
    errors = tuple(run.errors())
    differences = tuple(check_outputs(entry, printed_values(shown.stdout), shown.figures))
    judgement = judge(entry, run.seconds, errors, differences, slow_factor)
    return Result(user, entry, judgement, run.seconds, errors, differences, run, began, placement)


def failed_result(
    user: str, entry: NotebookEntry, message: str, placement: Placement = Placement()
) -> Result:
    """An ERROR for a notebook that could not run at all. Pure."""
    judgement = Judgement(Verdict.ERROR, message)
    return Result(user, entry, judgement, 0.0, (message,), (), None, None, placement)


def progress_line(result: Result) -> str:
    """``[alice] 02-sky-counts.ipynb PASS 14.2 s (expected 20 s)``, with ``on r12`` after
    the seconds on a named server, and why unless PASS."""
    server = result.placement.server_name
    line = (
        f"[{result.user}] {result.entry.name} {result.verdict} {result.seconds:.1f} s"
        + (f" on {server}" if server else "")
        + f" (expected {result.entry.seconds:g} s)"
    )
    return f"{line}: {result.judgement.detail}" if result.judgement.detail else line


def placements_line(results: list[Result]) -> str:
    """``servers: alice on r12 (booking 12, small), bob on the default server``: each
    user's server, in the results' order. Pure."""
    seen: dict[str, Placement] = {}
    for result in results:
        seen.setdefault(result.user, result.placement)
    return "servers: " + ", ".join(f"{user} on {p.label()}" for user, p in seen.items())


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


async def check_reservations(http: AsyncHTTPClient, plan: Plan) -> dict[str, Booking]:
    """For a size: that the service offers it. For bookings: each user's own active one
    among them, looked up with each user's token. RunRefused with every problem (a hub
    without the service says so once); nothing is booked or started here."""
    if not plan.size and not plan.bookings:
        return {}
    clients = {u.name: ReservationClient(http, plan.hub_url, u.name, u.token) for u in plan.users}
    first = clients[plan.users[0].name]
    pairs = [(user.name, number) for user in plan.users for number in plan.bookings]
    try:
        await first.check_service()
        if plan.size:
            problem = size_problem(plan.size, await first.sizes())
            if problem:
                raise RunRefused([problem])
            return {}
        answers = await asyncio.gather(
            *(clients[user].get(number) for user, number in pairs), return_exceptions=True
        )
    except BookingError as error:
        raise RunRefused([str(error)]) from None
    for answer in answers:
        if isinstance(answer, BookingError):
            raise RunRefused([str(answer)])
        if isinstance(answer, BaseException):
            raise answer
    seen = dict(zip(pairs, answers, strict=True))
    users = [user.name for user in plan.users]
    chosen, problems = choose_bookings(plan.bookings, users, seen, datetime.now(UTC))
    if problems:
        raise RunRefused(problems)
    return chosen


async def run_on_server(
    http: AsyncHTTPClient,
    plan: Plan,
    user: UserToken,
    say: Callable[[str], None],
    open_driver: DriverFactory,
    outcome: Outcome,
    origin: float,
    placement: Placement = Placement(),
) -> list[Result]:
    """One user's notebooks in suite order on the server ``placement`` names; the server
    is left as it was found. Times go into the timeline as seconds after ``origin`` (the
    run's monotonic start)."""
    entries = [entry for entry, _ in plan.notebooks]
    warnings = outcome.warnings
    hub = UserHub(http, plan.hub_url, user.name, user.token, placement.server_name)
    began = time.monotonic()
    say(f"[{user.name}] starting the server" + (f" {hub.server_name}" if hub.server_name else ""))

    def started(state: str) -> None:
        outcome.server_starts.append(
            ServerStart(user.name, began - origin, time.monotonic() - began, state, hub.server_name)
        )

    try:
        server = await hub.start_server(plan.start_timeout)
    except HubError as error:
        started("failed")
        say(f"[{user.name}] {error}")
        return [failed_result(user.name, entry, str(error), placement) for entry in entries]
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
            result = result_of(user.name, entry, run, plan.slow_factor, at, placement)
            results.append(result)
            say(progress_line(result))
    except (DriverError, HubError) as error:
        say(f"[{user.name}] {error}")
        results += [
            failed_result(user.name, e, str(error), placement) for e in entries[len(results) :]
        ]
    finally:
        if driver is not None:
            for message in await driver.close():
                warn(message)
        if server.started:
            problem = await hub.stop_server()
            if problem:
                warn(problem)
            else:
                named = f" {hub.server_name}" if hub.server_name else ""
                say(f"[{user.name}] server{named} stopped")
    return results


async def run_booked(
    http: AsyncHTTPClient,
    plan: Plan,
    user: UserToken,
    say: Callable[[str], None],
    open_driver: DriverFactory,
    outcome: Outcome,
    origin: float,
) -> list[Result]:
    """Book ``plan.size`` for the user, run the notebooks on the booking's server, and
    cancel the booking at the end, also when the run fails or is cancelled (a booking
    whose answer never came is found by the run's title). A refused booking is an ERROR
    for each notebook, in the service's words."""
    assert plan.size is not None and plan.minutes is not None
    client = ReservationClient(http, plan.hub_url, user.name, user.token)
    title = run_title(plan.run_id)
    start, end = booking_window(datetime.now(UTC), plan.minutes)
    booking: Booking | None = None
    say(f"[{user.name}] booking {plan.size} for {plan.minutes} min")
    try:
        try:
            # the key is the caller's own: one per run books each user once
            booking = await client.book(plan.size, start, end, title, f"aglais-hub-{plan.run_id}")
        except BookingError as error:
            say(f"[{user.name}] {error}")
            placement = Placement(size=plan.size)
            return [failed_result(user.name, e, str(error), placement) for e, _ in plan.notebooks]
        say(
            f"[{user.name}] booked {booking.size} until {iso(booking.end)}: "
            f"booking {booking.id}, server {booking.server_name}"
        )
        placement = Placement.of(booking)
        return await run_on_server(http, plan, user, say, open_driver, outcome, origin, placement)
    finally:
        await cancel_run_booking(client, booking, title, say, outcome.warnings)


async def cancel_run_booking(
    client: ReservationClient,
    booking: Booking | None,
    title: str,
    say: Callable[[str], None],
    warnings: list[str],
) -> None:
    """Cancel the run's booking (the service stops its server); with no booking known
    (refused, or the answer lost), any live one of the user's with the run's title."""
    user = client.user
    try:
        numbers = [booking.id] if booking else [b.id for b in await client.find(title)]
    except BookingError as error:
        numbers, problems = [], [f"the run's booking may still be booked: {error}"]
    else:
        problems = []
    for number in numbers:
        problem = await client.cancel(number)
        if problem:
            problems.append(problem)
        else:
            say(f"[{user}] booking {number} cancelled")
    for problem in problems:
        warnings.append(f"[{user}] {problem}")
        say(f"[{user}] warning: {problem}")


async def run_user(
    http: AsyncHTTPClient,
    plan: Plan,
    user: UserToken,
    say: Callable[[str], None],
    open_driver: DriverFactory,
    outcome: Outcome,
    origin: float,
    booking: Booking | None = None,
) -> list[Result]:
    """One user's notebooks: on a booking made for the run (``plan.size``), on the user's
    ``booking`` (left booked), or on the default server."""
    if plan.size:
        return await run_booked(http, plan, user, say, open_driver, outcome, origin)
    placement = Placement.of(booking) if booking else Placement()
    return await run_on_server(http, plan, user, say, open_driver, outcome, origin, placement)


async def run_benchmark(
    plan: Plan,
    say: Callable[[str], None] = print,
    open_driver: DriverFactory = jupyter.open_driver,
) -> Outcome:
    """Run ``plan``; RunRefused before anything is booked or started when the hub, a
    token, the reservation service, the size or a booking is refused. ``open_driver``
    opens the driver of the servers' flavour (Jupyter's)."""
    outcome = Outcome(plan, [])
    origin = time.monotonic()
    # each user holds a progress stream and a request at a time; tornado's default of 10
    # connections would queue (and time out) users past the fifth
    http = AsyncHTTPClient(force_instance=True, max_clients=10 + 2 * len(plan.users))
    try:
        await check_tokens(http, plan)
        bookings = await check_reservations(http, plan)
        # a task group: if one user's task breaks (or Ctrl-C), the others are cancelled
        # and clean up (kernels, files, servers, bookings) before the client closes
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    run_user(
                        http, plan, user, say, open_driver, outcome, origin, bookings.get(user.name)
                    )
                )
                for user in plan.users
            ]
    finally:
        http.close()
    outcome.results = [result for task in tasks for result in task.result()]
    outcome.finished = datetime.now(UTC)
    return outcome

"""`aglais-hub benchmark`: the platform's own CI runner. Runs the example notebooks
(a suite file: notebooks/examples/suite.yaml) on a deployed hub as N users at once, each
user's notebooks in suite order on the user's default server (or, with --size or
--booking, a booking's server r<id>), and gives each notebook of each user a verdict:

  PASS   as expected
  SLOW   over --slow-factor × the suite's expected seconds
  FAST   under half the expected seconds: suspiciously fast
  ERROR  a cell failed, or an output differs from the suite's (the first difference shown)

The tokens file has a line `username token` per user (a hub API token, from the hub's
Token page); `#` starts a comment. A server that was not running is started and stopped
again; the notebooks are uploaded to Benchmark/<run id>/ and removed afterwards.

With --size NAME each user books NAME (with their own token, at the hub's reservation
service) from now for --minutes, runs on the booking's server r<id> and cancels the
booking at the end, also when the run fails or is interrupted; a booking the service
refuses (no capacity, the tier forbids it) is an ERROR for that user's notebooks, in the
service's words, and the other users go on. With --booking ID [ID ...] each user runs on
their own booking among them, which must be active now; it is left booked, and its server
stopped only if the run started it.

Exit status: 0 when no notebook is ERROR (with --strict: nor SLOW nor FAST), 1 otherwise,
2 when the run cannot start (usage, suite, notebook file, tokens file, hub, token; a hub
without a reservation service, a size it does not offer, a booking that is not the user's
or not active now).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..examples import EXAMPLES_DIR
from .booking import MAX_DEFAULT_MINUTES, default_minutes
from .driver import NotebookFileError, read_notebook
from .hub import DEFAULT_START_TIMEOUT, hub_base, valid_hub_url
from .run import DEFAULT_TIMEOUT, Plan, RunRefused, UserToken, new_run_id, placements_line
from .suite import NotebookEntry, Suite, SuiteError, load_suite
from .verdict import DEFAULT_SLOW_FACTOR, exit_status

DEFAULT_SUITE = EXAMPLES_DIR / "suite.yaml"
DEFAULT_OUT = "benchmark-results"
PROG = "aglais-hub benchmark"


class UsageError(ValueError):
    """The command line, or a file it names, is wrong; one line for the user."""


class TokensError(UsageError):
    """The tokens file is missing, empty or malformed; the message names it (and the
    line), never a token."""


def parse_tokens(text: str, source: str) -> list[UserToken]:
    """The ``username token`` lines of ``text`` (the file ``source``), in order; ``#``
    starts a comment. TokensError for a malformed line, a user listed twice or no user."""
    users: list[UserToken] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:  # never echo the line: it may hold a token
            raise TokensError(
                f"{source}:{number}: expected 'username token', found {len(fields)} "
                f"field{'s' if len(fields) != 1 else ''}"
            )
        name, token = fields
        if any(user.name == name for user in users):
            raise TokensError(f"{source}:{number}: {name} is listed twice")
        users.append(UserToken(name, token))
    if not users:
        raise TokensError(f"{source}: no users in it (expected lines of 'username token')")
    return users


def read_tokens(path: Path) -> list[UserToken]:
    """The users of the tokens file ``path``; TokensError when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise TokensError(f"{path}: cannot read the tokens file: {reason}") from None
    return parse_tokens(text, str(path))


def choose_users(users: Sequence[UserToken], count: int | None, source: str) -> list[UserToken]:
    """The first ``count`` users (all when None); TokensError when there are fewer."""
    if count is None:
        return list(users)
    if count > len(users):
        raise TokensError(f"--users {count}: {source} has only {_count(len(users), 'user')}")
    return list(users[:count])


def choose_notebooks(suite: Suite, only: Sequence[str] | None) -> list[NotebookEntry]:
    """The suite's notebooks named by ``only`` (file name or stem), in suite order; all
    when None. UsageError for a name the suite does not list."""
    if not only:
        return list(suite.notebooks)
    known = {entry.name: entry for entry in suite.notebooks}
    known.update({entry.path.stem: entry for entry in suite.notebooks})
    for name in only:
        if name not in known:
            names = ", ".join(entry.name for entry in suite.notebooks)
            raise UsageError(f"--only {name}: {suite.path} has no such notebook (it has: {names})")
    chosen = {known[name] for name in only}
    return [entry for entry in suite.notebooks if entry in chosen]


def bounded_number(minimum: float, strict: bool, kind: type = float) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number at least ``minimum`` (above it when ``strict``)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            bound = "greater than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g}, not {text}")
        return value

    return parse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``benchmark`` subcommand on ``sub`` (aglais_hub.cli's subparsers)."""
    parser = sub.add_parser(
        "benchmark",
        help="run the example notebooks on a hub as N users and judge each run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hub", required=True, metavar="URL", help="the hub's public URL")
    parser.add_argument("--tokens", required=True, metavar="FILE", help="lines of 'username token'")
    parser.add_argument(
        "--users", type=bounded_number(1, False, int), metavar="N", help="the first N users (all)"
    )
    parser.add_argument(
        "--notebooks",
        default=str(DEFAULT_SUITE),
        metavar="SUITE",
        help="the suite file (default: notebooks/examples/suite.yaml)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="only these notebooks (file name or stem)"
    )
    parser.add_argument(
        "--slow-factor",
        type=bounded_number(1, False),
        default=DEFAULT_SLOW_FACTOR,
        metavar="F",
        help="SLOW over F × the expected seconds (default: %(default)g)",
    )
    parser.add_argument("--strict", action="store_true", help="SLOW and FAST fail the run too")
    parser.add_argument(
        "--timeout",
        type=bounded_number(0, True),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="per notebook, kernel start included (default: %(default)g)",
    )
    parser.add_argument(
        "--start-timeout",
        type=bounded_number(0, True),
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
        help="for each user's server to start, queue included (default: %(default)g)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--size",
        metavar="NAME",
        help="book this size for each user and run on the booking's server, cancelled after",
    )
    where.add_argument(
        "--booking",
        nargs="+",
        type=bounded_number(1, False, int),
        metavar="ID",
        help="run on each user's own active booking among these (left booked)",
    )
    parser.add_argument(
        "--minutes",
        type=bounded_number(1, False, int),
        metavar="M",
        help="with --size: how long to book (default: the notebooks' expected seconds × "
        "--slow-factor, plus --start-timeout, rounded up to a minute, at most "
        f"{MAX_DEFAULT_MINUTES}, the tiers' default longest booking; a tier allowing less "
        "refuses it, saying its limit)",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help="where results go (%(default)s)"
    )
    parser.set_defaults(func=main)
    return parser


def make_plan(args: argparse.Namespace) -> Plan:
    """The run the arguments ask for, everything local checked: UsageError, SuiteError
    or NotebookFileError otherwise."""
    if not valid_hub_url(args.hub):
        raise UsageError(f"--hub {args.hub}: not an http(s) URL")
    suite = load_suite(args.notebooks)
    entries = choose_notebooks(suite, args.only)
    notebooks = tuple((entry, read_notebook(entry.path)) for entry in entries)
    users = choose_users(read_tokens(Path(args.tokens)), args.users, args.tokens)
    size, bookings, minutes = args.size, tuple(args.booking or ()), args.minutes
    if minutes is not None and not size:
        raise UsageError("--minutes goes with --size")
    if size and minutes is None:
        minutes = default_minutes(
            (entry.seconds for entry in entries), args.slow_factor, args.start_timeout
        )
    if len(set(bookings)) != len(bookings):
        raise UsageError(f"--booking {' '.join(map(str, bookings))}: a booking listed twice")
    return Plan(
        hub_url=hub_base(args.hub),
        users=tuple(users),
        notebooks=notebooks,
        run_id=new_run_id(),
        slow_factor=args.slow_factor,
        timeout=args.timeout,
        start_timeout=args.start_timeout,
        size=size,
        minutes=minutes,
        bookings=bookings,
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _where(plan: Plan) -> str:
    """Where the run goes, after the hub's URL in the first line."""
    if plan.size:
        return f", each user on a booking of {plan.size} for {plan.minutes} min"
    if plan.bookings:
        return f", on --booking {' '.join(map(str, plan.bookings))}"
    return ""


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _say(line: str) -> None:
    print(line, flush=True)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark the arguments describe; the exit status."""
    from .report import JUNIT_XML, REPORT_HTML, RESULTS_JSON, summary_table, write_reports
    from .run import run_benchmark

    try:
        plan = make_plan(args)
    except (UsageError, SuiteError, NotebookFileError) as error:
        _error(str(error))
        return 2
    out = Path(args.out)
    try:  # now, not after a long run
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _error(f"--out {out}: cannot make the directory: {error.strerror or error}")
        return 2
    names = ", ".join(user.name for user in plan.users)
    _say(
        f"benchmark {plan.run_id}: {_count(len(plan.notebooks), 'notebook')} × "
        f"{_count(len(plan.users), 'user')} ({names}) on {plan.hub_url}{_where(plan)}"
    )
    try:
        outcome = asyncio.run(run_benchmark(plan, _say))
    except RunRefused as refused:
        for message in refused.messages:
            _error(message)
        return 2
    except KeyboardInterrupt:
        _error("interrupted: no results written")
        return 130
    _say("")
    _say(summary_table(outcome.results))
    _say(placements_line(outcome.results))
    try:
        write_reports(outcome, out, args.strict)
    except OSError as error:
        _error(f"--out {out}: cannot write the results: {error}")
        return 2
    _say(f"results: {out / RESULTS_JSON}, {out / JUNIT_XML}, {out / REPORT_HTML}")
    return exit_status((result.verdict for result in outcome.results), args.strict)

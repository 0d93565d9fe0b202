"""`aglais-hub benchmark-nightly`: the benchmark as the chart's CronJob runs it.

With the hub's ``benchmark`` service token (``AGLAIS_BENCHMARK_API_TOKEN``, never an
argument) it makes a short-lived token for each ``--user`` (``POST
hub/api/users/<name>/tokens`` with an expiry and only the scopes a run needs), writes them
to a tokens file (mode 0600, in a private temporary directory), runs `aglais-hub
benchmark` into ``<reports>/<run id>/``, and revokes the tokens again, also when the run
fails. Then it keeps the newest ``--keep`` runs (older run folders are deleted), writes
``<reports>/index.html`` (every kept run, newest first, with its counts) and
``<reports>/latest.json`` (this run's summary), and sends the summary to the reservation
service (``PUT services/reservations/api/benchmark/latest``), whose ``/metrics`` shows it
as gauges for Prometheus and the Grafana dashboard.

Exit status: the benchmark's (0, 1 on any ERROR or with --strict on SLOW or FAST, 2
when it could not start); 2 also when no token could be made.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from ..examples import EXAMPLES_DIR
from ..hubconfig import BENCHMARK_TOKEN_ENV, RESERVATIONS, benchmark_token_scopes
from .cli import bounded_number
from .hub import DEFAULT_START_TIMEOUT, Api, Unreachable, hub_base, valid_hub_url
from .run import DEFAULT_TIMEOUT, new_run_id
from .verdict import DEFAULT_SLOW_FACTOR, Verdict

PROG = "aglais-hub benchmark-nightly"
DEFAULT_KEEP = 14
# where images/hub/Dockerfile puts the example suite (the package's own path is in
# site-packages there, without the notebooks beside it)
IMAGE_SUITE = Path("/srv/aglais/examples/suite.yaml")
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")  # `run.new_run_id`: sorts by time
SUMMARY_JSON = "summary.json"
LATEST_JSON = "latest.json"
INDEX_HTML = "index.html"
TOKEN_NOTE = "aglais nightly benchmark"
TOKEN_MARGIN = 900  # seconds a token outlives the longest the run may take


class NightlyError(Exception):
    """The run cannot go on (no service token, a token the hub will not make); one line."""


@dataclass(frozen=True)
class Minted:
    """A token made for one user: its secret and the hub's id for revoking it."""

    user: str
    token: str
    token_id: str


def default_suite() -> Path:
    """The example suite beside this package (a checkout), else where the hub image has it."""
    beside = EXAMPLES_DIR / "suite.yaml"
    return beside if beside.exists() or not IMAGE_SUITE.exists() else IMAGE_SUITE


def token_lifetime(notebooks: int, timeout: float, start_timeout: float) -> int:
    """Seconds a run's tokens live: the server start, every notebook's bound, a margin."""
    return int(start_timeout + max(notebooks, 1) * timeout + TOKEN_MARGIN)


def tokens_text(minted: Sequence[Minted]) -> str:
    """The benchmark's tokens file: ``username token`` lines."""
    return "".join(f"{m.user} {m.token}\n" for m in minted)


def write_private(directory: Path, name: str, text: str) -> Path:
    """``text`` in a new file only its owner may read (0600, made so, never widened)."""
    path = directory / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    return path


# -- the hub, with the service token --------------------------------------------------------


def _user_path(user: str) -> str:
    return f"hub/api/users/{quote(user, safe='')}/tokens"


async def mint_tokens(
    api: Api, users: Sequence[str], note: str, expires_in: int, reservations: bool
) -> list[Minted]:
    """A token for each user with `benchmark_token_scopes`; NightlyError naming the user
    and the hub's answer when one is refused (those already made are revoked)."""
    minted: list[Minted] = []
    for user in users:
        body = {
            "note": note,
            "expires_in": expires_in,
            "scopes": benchmark_token_scopes(user, reservations),
        }
        try:
            response = await api.request("POST", _user_path(user), body)
        except Unreachable as error:
            await revoke_tokens(api, minted)
            raise NightlyError(f"cannot reach the hub at {api.base_url}: {error.reason}") from None
        model = response.json()
        if response.status != 201 or not isinstance(model, dict) or "token" not in model:
            await revoke_tokens(api, minted)
            raise NightlyError(
                f"the hub would not make a token for {user} ({response.message()}): is "
                f"{user} in benchmark.users, and a user of the hub?"
            )
        minted.append(Minted(user, model["token"], str(model["id"])))
    return minted


async def revoke_tokens(api: Api, minted: Sequence[Minted]) -> list[str]:
    """Revoke each token; what could not be revoked (warnings; they expire anyway)."""
    problems = []
    for m in minted:
        path = f"{_user_path(m.user)}/{m.token_id}"
        try:
            response = await api.request("DELETE", path)
        except Unreachable as error:
            problems.append(f"could not revoke {m.user}'s token: {error.reason}")
            continue
        if response.status not in (204, 404):
            problems.append(f"could not revoke {m.user}'s token: {response.message()}")
    return problems


async def publish(api: Api, summary: dict) -> str | None:
    """Send ``summary`` to the reservation service; None when it took it, else why not."""
    path = f"services/{RESERVATIONS}/api/benchmark/latest"
    try:
        response = await api.request("PUT", path, summary)
    except Unreachable as error:
        return f"the reservation service did not take the summary: {error.reason}"
    if not response.ok:
        return f"the reservation service did not take the summary: {response.message()}"
    return None


def _with_api(hub: str, token: str, action: Callable[[Api], object]) -> object:
    from tornado.httpclient import AsyncHTTPClient

    async def go() -> object:
        http = AsyncHTTPClient(force_instance=True)
        try:
            return await action(Api(http, hub, token))
        finally:
            http.close()

    return asyncio.run(go())


# -- reports --------------------------------------------------------------------------------


def run_summary(
    run_id: str,
    results: dict | None,
    started: datetime,
    finished: datetime,
    exit_status: int,
    users: Sequence[str],
    message: str | None = None,
) -> dict:
    """What the index, latest.json and the metrics say of one run, from the benchmark's
    results.json (None when it wrote none: the run could not start). Pure."""
    counts = {verdict.value: 0 for verdict in Verdict}
    rows = []
    if results:
        counts.update({k: int(v) for k, v in (results.get("counts") or {}).items()})
        rows = [
            {
                "user": r["user"],
                "notebook": r["notebook"],
                "verdict": r["verdict"],
                "seconds": r.get("seconds"),
            }
            for r in results.get("results", [])
        ]
    return {
        "run_id": run_id,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "exit_status": exit_status,
        "users": list(users),
        "counts": counts,
        "results": rows,
        "message": message,
    }


def run_dirs(reports: Path) -> list[Path]:
    """The run folders under ``reports``, newest first."""
    if not reports.is_dir():
        return []
    found = [p for p in reports.iterdir() if p.is_dir() and RUN_ID.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def prune(reports: Path, keep: int) -> list[Path]:
    """Delete the run folders beyond the newest ``keep``; the folders deleted."""
    old = run_dirs(reports)[keep:]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def read_summaries(reports: Path) -> list[tuple[str, dict | None]]:
    """(run id, its summary or None when unreadable) of every kept run, newest first."""
    found = []
    for path in run_dirs(reports):
        try:
            found.append((path.name, json.loads((path / SUMMARY_JSON).read_text())))
        except (OSError, ValueError):
            found.append((path.name, None))
    return found


def _report_link(reports: Path, run_id: str) -> str | None:
    for name in ("report.html", "results.json"):
        if (reports / run_id / name).exists():
            return f"{run_id}/{name}"
    return None


STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}th,td{padding:.3rem .8rem;border-bottom:1px solid #ddd;
text-align:left}td.n{text-align:right}.fail{color:#b00020;font-weight:600}.ok{color:#1b5e20}"""


def index_html(summaries: Sequence[tuple[str, dict | None]], links: dict[str, str | None]) -> str:
    """The reports' index page: one row per run, newest first, its counts and a link to
    its report. Pure."""
    verdicts = [v.value for v in Verdict]
    head = "".join(f"<th>{v}</th>" for v in verdicts)
    rows = []
    for run_id, summary in summaries:
        link = links.get(run_id)
        name = html.escape(run_id)
        cell = f'<a href="{html.escape(link)}">{name}</a>' if link else name
        if summary is None:
            rows.append(f"<tr><td>{cell}</td><td colspan='{len(verdicts) + 2}'>no summary</td>")
            continue
        status = int(summary.get("exit_status", 2))
        word = {0: "passed", 1: "failed", 2: "did not run"}.get(status, f"exit {status}")
        counts = summary.get("counts") or {}
        numbers = "".join(f"<td class='n'>{int(counts.get(v, 0))}</td>" for v in verdicts)
        note = summary.get("message") or ""
        rows.append(
            f"<tr><td>{cell}</td><td>{html.escape(str(summary.get('finished', '')))}</td>"
            f"<td class='{'ok' if status == 0 else 'fail'}'>{word}</td>{numbers}"
            f"<td>{html.escape(note)}</td></tr>"
        )
    body = "\n".join(rows) or "<tr><td colspan='7'>no runs yet</td></tr>"
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Aglais nightly benchmark</title><style>{STYLE}</style></head><body>\n"
        "<h1>Nightly benchmark</h1>\n"
        f"<table><thead><tr><th>run</th><th>finished</th><th>result</th>{head}<th></th>"
        f"</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n</body></html>\n"
    )


def write_index(reports: Path) -> Path:
    """``index.html`` of the runs kept under ``reports`` (written whole, then renamed)."""
    summaries = read_summaries(reports)
    links = {run_id: _report_link(reports, run_id) for run_id, _ in summaries}
    return _replace(reports / INDEX_HTML, index_html(summaries, links))


def _replace(path: Path, text: str) -> Path:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


# -- the command ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``benchmark-nightly``."""
    parser.add_argument("--hub", required=True, metavar="URL", help="the hub's URL")
    parser.add_argument(
        "--reports", required=True, metavar="DIR", help="where runs are kept (index.html)"
    )
    parser.add_argument(
        "--user",
        dest="users",
        action="append",
        required=True,
        metavar="NAME",
        help="a hub user the run acts as (repeat for several, all at once)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these notebooks")
    parser.add_argument("--notebooks", metavar="SUITE", help="the suite file (the examples')")
    parser.add_argument(
        "--size", metavar="NAME", help="book this size for each user and run on its server"
    )
    # the benchmark's own bounds, so a bad value is refused before any token is made
    parser.add_argument(
        "--slow-factor", type=bounded_number(1, False), default=DEFAULT_SLOW_FACTOR, metavar="F"
    )
    parser.add_argument("--strict", action="store_true", help="SLOW and FAST fail the run")
    parser.add_argument(
        "--timeout", type=bounded_number(0, True), default=DEFAULT_TIMEOUT, metavar="SECONDS"
    )
    parser.add_argument(
        "--start-timeout",
        type=bounded_number(0, True),
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
    )
    parser.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, metavar="N", help="runs kept (%(default)s)"
    )
    parser.add_argument(
        "--no-reservations",
        action="store_true",
        help="the hub has no reservation service: no summary sent, no scope for it",
    )


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``benchmark-nightly`` on ``sub`` (aglais_hub.cli's subparsers)."""
    parser = sub.add_parser(
        "benchmark-nightly",
        help="the nightly benchmark: tokens from the benchmark service, reports kept",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=main)
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def benchmark_arguments(args: argparse.Namespace, tokens: Path, out: Path) -> argparse.Namespace:
    """The `aglais-hub benchmark` arguments of this run, parsed by its own parser."""
    from . import cli as benchmark_cli

    parser = argparse.ArgumentParser(prog="aglais-hub")
    benchmark_cli.add_parser(parser.add_subparsers())
    argv = ["benchmark", "--hub", args.hub, "--tokens", str(tokens), "--out", str(out)]
    argv += ["--notebooks", str(args.notebooks or default_suite())]
    argv += ["--slow-factor", str(args.slow_factor), "--timeout", str(args.timeout)]
    argv += ["--start-timeout", str(args.start_timeout)]
    if args.size:
        argv += ["--size", args.size]
    if args.only:
        argv += ["--only", *args.only]
    if args.strict:
        argv.append("--strict")
    return parser.parse_args(argv)


def _notebook_count(args: argparse.Namespace) -> int:
    from .cli import UsageError, choose_notebooks
    from .suite import SuiteError, load_suite

    try:
        return len(choose_notebooks(load_suite(args.notebooks or default_suite()), args.only))
    except (SuiteError, UsageError, OSError):
        return 1  # the benchmark says what is wrong


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the benchmark cleans up, then the tokens are revoked


def run(args: argparse.Namespace, service_token: str) -> int:
    """One nightly run; the exit status."""
    from . import cli as benchmark_cli

    hub = hub_base(args.hub)
    reports = Path(args.reports)
    reports.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    out = reports / run_id
    started = datetime.now(UTC)
    reservations = not args.no_reservations
    lifetime = token_lifetime(_notebook_count(args), args.timeout, args.start_timeout)
    note = f"{TOKEN_NOTE} {run_id}"
    results, message = None, None
    _say(f"{PROG} {run_id}: {', '.join(args.users)} on {hub}")
    try:
        minted = _with_api(
            hub,
            service_token,
            lambda api: mint_tokens(api, args.users, note, lifetime, reservations),
        )
    except NightlyError as error:
        _error(str(error))
        status, message, minted = 2, str(error), []
    if minted:
        # Kubernetes stops a Job's pod (its deadline, a deletion) with SIGTERM: end like Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
        private = Path(tempfile.mkdtemp(prefix="aglais-nightly-"))  # 0700
        try:
            tokens = write_private(private, "tokens.txt", tokens_text(minted))
            status = benchmark_cli.main(benchmark_arguments(args, tokens, out))
        finally:
            shutil.rmtree(private, ignore_errors=True)
            for problem in _with_api(hub, service_token, lambda api: revoke_tokens(api, minted)):
                _error(f"warning: {problem}")
        try:
            results = json.loads((out / "results.json").read_text())
        except (OSError, ValueError):
            message = "the benchmark wrote no results (see the job's log)"
        else:  # the run's folder takes the benchmark's own run id (Benchmark/<id>/, results)
            own = str(results.get("run_id", ""))
            if own != run_id and RUN_ID.match(own) and not (reports / own).exists():
                out = out.rename(reports / own)
                run_id = own
    summary = run_summary(run_id, results, started, datetime.now(UTC), status, args.users, message)
    out.mkdir(parents=True, exist_ok=True)
    _replace(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    _replace(reports / LATEST_JSON, json.dumps(summary, indent=2) + "\n")
    for old in prune(reports, args.keep):
        _say(f"removed the old run {old.name}")
    _say(f"reports: {write_index(reports)}")
    if reservations:
        problem = _with_api(hub, service_token, lambda api: publish(api, summary))
        if problem:
            _error(f"warning: {problem}")
        else:
            _say("summary sent to the reservation service's metrics")
    return status


def main(args: argparse.Namespace) -> int:
    """``benchmark-nightly``: check the arguments and the token, then `run`."""
    token = os.environ.get(BENCHMARK_TOKEN_ENV, "")
    if not token:
        _error(f"{BENCHMARK_TOKEN_ENV} is not set: the hub's benchmark service token")
        return 2
    if not valid_hub_url(args.hub):
        _error(f"--hub {args.hub}: not an http(s) URL")
        return 2
    if args.keep < 1:
        _error(f"--keep {args.keep}: keep at least one run")
        return 2
    return run(args, token)


if __name__ == "__main__":
    top = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_arguments(top)
    sys.exit(main(top.parse_args()))

"""The nightly benchmark's summary at the reservation service: checked (`parse_summary`,
pure), kept in the database (the latest run only, so a restarted service still shows it)
and shown as gauges on ``metrics`` (`set_gauges`).

The nightly run (`aglais_hub.benchmark.nightly`) sends it with the hub's ``benchmark``
service token to ``PUT api/benchmark/latest``; only that service and admins may.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from sqlalchemy import delete, select

from . import metrics
from .models import BenchmarkRun
from .rules import Refused, parse_time
from .store import Store

VERDICTS = ("PASS", "SLOW", "FAST", "ERROR")
MAX_RESULTS = 500  # notebooks × users of one run: bounds the gauges' label sets
MAX_NAME = 200
MAX_RUN_ID = 64  # the column's width
# one line: no control characters, line separators or bidi controls (openapi.yaml's
# BenchmarkName pattern, the same as a user name's)
NOT_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
FIELDS = {"run_id", "started", "finished", "exit_status", "users", "counts", "results", "message"}


def _name(value: object, field: str, longest: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value or len(value) > longest or NOT_A_LINE.search(value):
        raise Refused(422, f"'{field}' must be a line of text of at most {longest} characters.")
    return value


def _count(value: object, field: str) -> int:
    # 7.0 is a whole number too (JSON Schema's "integer", which the OpenAPI document says)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**6:
        raise Refused(422, f"'{field}' must be a whole number from 0 to 1000000.")
    return value


def parse_summary(data: dict) -> dict:
    """The summary a nightly run sent, every field checked (422 naming it); only the
    fields the metrics and the index use. Pure."""
    unknown = set(data) - FIELDS
    if unknown:
        raise Refused(422, f"Unknown field(s): {', '.join(sorted(unknown)[:10])[:300]}.")
    finished = parse_time(data.get("finished"), "finished")
    status = data.get("exit_status")
    if isinstance(status, bool) or status not in (0, 1, 2):
        raise Refused(422, "'exit_status' must be 0, 1 or 2 (the benchmark's exit status).")
    status = int(status)  # 1.0 is 1, as for the counts
    counts = data.get("counts")
    if not isinstance(counts, dict) or set(counts) - set(VERDICTS):
        raise Refused(422, f"'counts' must map verdicts ({', '.join(VERDICTS)}) to numbers.")
    results = data.get("results", [])
    if not isinstance(results, list) or len(results) > MAX_RESULTS:
        raise Refused(422, f"'results' must be a list of at most {MAX_RESULTS} results.")
    rows = []
    for index, row in enumerate(results):
        where = f"results[{index}]"
        if not isinstance(row, dict):
            raise Refused(422, f"'{where}' must be an object.")
        if row.get("verdict") not in VERDICTS:
            raise Refused(422, f"'{where}.verdict' must be one of {', '.join(VERDICTS)}.")
        seconds = row.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise Refused(422, f"'{where}.seconds' must be a number of seconds, or null.")
        rows.append(
            {
                "user": _name(row.get("user"), f"{where}.user"),
                "notebook": _name(row.get("notebook"), f"{where}.notebook"),
                "verdict": row["verdict"],
                "seconds": seconds,
            }
        )
    return {
        "run_id": _name(data.get("run_id"), "run_id", MAX_RUN_ID),
        "finished": finished.isoformat(),
        "exit_status": status,
        "counts": {v: _count(counts.get(v, 0), f"counts.{v}") for v in VERDICTS},
        "results": rows,
    }


def save_latest(store: Store, summary: dict, now: datetime) -> None:
    """Keep ``summary`` (from `parse_summary`) as the latest run, in place of the last."""
    with store.session() as session:
        session.execute(delete(BenchmarkRun))
        session.add(
            BenchmarkRun(
                run_id=summary["run_id"],
                finished=datetime.fromisoformat(summary["finished"]),
                summary=summary,
                received_at=now,
            )
        )


def load_latest(store: Store) -> dict | None:
    """The latest run's summary, or None before the first."""
    with store.session() as session:
        row = session.scalars(select(BenchmarkRun).order_by(BenchmarkRun.id.desc())).first()
        return dict(row.summary) if row is not None else None


def set_gauges(summary: dict | None) -> None:
    """Show ``summary`` (the latest run's, None before the first) on ``metrics``."""
    metrics.BENCHMARK.summary = summary

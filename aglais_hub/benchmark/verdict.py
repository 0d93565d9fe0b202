"""The verdict on one notebook of one user, and the command's exit status. Pure.

- ERROR: a cell failed (or the run could not happen), or an output differs from the
  suite's expectation; the detail shows the first error or difference.
- SLOW: over ``slow_factor`` × the expected seconds (exactly that is not SLOW).
- FAST: under half the expected seconds (exactly half is not FAST): suspiciously fast, as
  the old Aglais runner flagged it — a notebook that skipped its work.
- PASS: otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .suite import NotebookEntry

DEFAULT_SLOW_FACTOR = 2.0
FAST_FRACTION = 0.5


class Verdict(StrEnum):
    """What a notebook's run comes to."""

    PASS = "PASS"
    SLOW = "SLOW"
    FAST = "FAST"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Judgement:
    """A verdict and, unless PASS, one line saying why."""

    verdict: Verdict
    detail: str = ""


def _first(items: Sequence[str], more: str) -> str:
    extra = len(items) - 1
    return items[0] + (f" (and {extra} more {more})" if extra else "")


def judge(
    entry: NotebookEntry,
    seconds: float,
    errors: Sequence[str],
    differences: Sequence[str],
    slow_factor: float = DEFAULT_SLOW_FACTOR,
) -> Judgement:
    """The verdict on a run of ``entry`` that took ``seconds``, had ``errors`` (cells that
    raised, problems running it) and ``differences`` (from `suite.check_outputs`)."""
    if errors:  # the first error explains the differences that follow from it
        return Judgement(Verdict.ERROR, _first(errors, "errors"))
    if differences:
        return Judgement(Verdict.ERROR, "output differs: " + _first(differences, "differences"))
    # the details leave out the expected seconds: every line showing one shows them
    if seconds > slow_factor * entry.seconds:
        return Judgement(Verdict.SLOW, f"over {slow_factor:g} × the expected time")
    if seconds < FAST_FRACTION * entry.seconds:
        return Judgement(Verdict.FAST, "under half the expected time: suspiciously fast")
    return Judgement(Verdict.PASS)


def fails(verdict: Verdict, strict: bool) -> bool:
    """Whether ``verdict`` fails the run: ERROR always; SLOW and FAST with ``strict``."""
    return verdict is Verdict.ERROR or (strict and verdict in (Verdict.SLOW, Verdict.FAST))


def exit_status(verdicts: Iterable[Verdict], strict: bool) -> int:
    """0 when no verdict fails the run, else 1."""
    return 1 if any(fails(verdict, strict) for verdict in verdicts) else 0

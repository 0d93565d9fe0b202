"""What a run leaves: the summary table printed at the end, and in the output directory
``results.json`` (every result with its cells), ``junit.xml`` (a test case per notebook
and user, for CI), ``report.html`` (a page with the plots: `html_report`) and the executed
notebooks (``notebooks/<user>/<name>.ipynb``, with their outputs, to open when a result
needs a closer look).

Everything but `write_reports` is pure.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from .driver import CellRun, Notebook, NotebookRun
from .run import Outcome, Result
from .verdict import Verdict, exit_status, fails

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
REPORT_HTML = "report.html"
NOTEBOOKS_DIR = "notebooks"
DETAIL_WIDTH = 90
# characters XML 1.0 cannot hold (a kernel's output may carry them)
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def counts(results: Sequence[Result]) -> dict[str, int]:
    """How many results of each verdict, every verdict listed."""
    found = Counter(result.verdict for result in results)
    return {verdict.value: found[verdict] for verdict in Verdict}


def summary_line(results: Sequence[Result]) -> str:
    """``14 results: 12 PASS, 2 SLOW, 0 FAST, 0 ERROR``."""
    parts = ", ".join(f"{n} {verdict}" for verdict, n in counts(results).items())
    return f"{len(results)} results: {parts}"


def summary_table(results: Sequence[Result]) -> str:
    """The results as an aligned table, one row per notebook and user, then the counts."""
    rows = [("USER", "NOTEBOOK", "VERDICT", "SECONDS", "EXPECTED", "DETAIL")]
    for r in results:
        detail = r.judgement.detail
        if len(detail) > DETAIL_WIDTH:
            detail = detail[: DETAIL_WIDTH - 1] + "…"
        seconds = f"{r.seconds:.1f}" if r.run is not None else "-"
        rows.append((r.user, r.entry.name, r.verdict, seconds, f"{r.entry.seconds:g}", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in (3, 4) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join([*lines, summary_line(results)])


def _cells(run: NotebookRun) -> list[dict]:
    cells = []
    for cell in run.cells:
        shown = cell.shown()
        cells.append(
            {
                "cell": cell.index,
                "status": cell.status,
                "seconds": round(cell.seconds, 3),
                "stdout": shown.stdout,
                "figures": shown.figures,
                "error": shown.errors[0] if shown.errors else None,
                "traceback": cell.traceback() or None,
            }
        )
    return cells


def result_document(result: Result) -> dict:
    """One result as JSON."""
    run = result.run
    return {
        "user": result.user,
        "notebook": result.entry.name,
        "verdict": result.verdict.value,
        "detail": result.judgement.detail,
        "seconds": round(result.seconds, 3) if run is not None else None,
        "began": round(result.began, 3) if result.began is not None else None,
        "server_name": result.placement.server_name,
        "booking": result.placement.booking,
        "size": result.placement.size,
        "expected_seconds": result.entry.seconds,
        "errors": list(result.errors),
        "differences": list(result.differences),
        "cells": _cells(run) if run is not None else [],
    }


def results_document(outcome: Outcome, strict: bool) -> dict:
    """The whole run as JSON: what ran, against what, and every result."""
    plan = outcome.plan
    return {
        "run_id": plan.run_id,
        "hub": plan.hub_url,
        "started": outcome.started.isoformat(),
        "finished": outcome.finished.isoformat() if outcome.finished else None,
        "users": [user.name for user in plan.users],
        "notebooks": [entry.name for entry, _ in plan.notebooks],
        "slow_factor": plan.slow_factor,
        "strict": strict,
        "size": plan.size,
        "bookings": list(plan.bookings),
        "timeout": plan.timeout,
        "counts": counts(outcome.results),
        "exit_status": exit_status((r.verdict for r in outcome.results), strict),
        "warnings": list(outcome.warnings),
        "server_starts": [
            {
                "user": start.user,
                "began": round(start.began, 3),
                "seconds": round(start.seconds, 3),
                "state": start.state,
                "server_name": start.server_name,
            }
            for start in outcome.server_starts
        ],
        "results": [result_document(result) for result in outcome.results],
    }


def _xml_text(text: str) -> str:
    return NOT_XML.sub("?", text)


def junit_document(outcome: Outcome, strict: bool) -> ElementTree.Element:
    """The run as JUnit XML: a suite per user, a case per notebook. A cell's error or a
    problem running it is an <error>, an output that differs a <failure>; SLOW and FAST
    are <failure>s with ``strict`` and otherwise pass, saying so in <system-out>."""
    root = ElementTree.Element("testsuites", name="aglais-hub benchmark")
    by_user: dict[str, list[Result]] = {}
    for result in outcome.results:
        by_user.setdefault(result.user, []).append(result)
    for user, results in by_user.items():
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"benchmark.{user}",
            tests=str(len(results)),
            failures=str(sum(1 for r in results if fails(r.verdict, strict) and not r.errors)),
            errors=str(sum(1 for r in results if r.errors)),
            time=f"{sum(r.seconds for r in results):.3f}",
        )
        properties = ElementTree.SubElement(suite, "properties")
        for name, value in (("run_id", outcome.plan.run_id), ("hub", outcome.plan.hub_url)):
            ElementTree.SubElement(properties, "property", name=name, value=value)
        for r in results:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"benchmark.{user}",
                name=r.entry.name,
                time=f"{r.seconds:.3f}",
            )
            detail = _xml_text(r.judgement.detail)
            if r.errors:
                element = ElementTree.SubElement(case, "error", message=detail, type="ERROR")
                tracebacks = [c.traceback() for c in (r.run.cells if r.run else ())]
                element.text = _xml_text("\n".join([*r.errors, *filter(None, tracebacks)]))
            elif fails(r.verdict, strict):
                element = ElementTree.SubElement(
                    case, "failure", message=detail, type=r.verdict.value
                )
                element.text = _xml_text("\n".join(r.differences) or detail)
            out = ElementTree.SubElement(case, "system-out")
            out.text = _xml_text(
                f"{r.verdict} {r.seconds:.1f} s (expected {r.entry.seconds:g} s)"
                + (f": {r.judgement.detail}" if r.judgement.detail else "")
            )
    root.set("tests", str(len(outcome.results)))
    root.set("failures", str(sum(int(s.get("failures", 0)) for s in root)))
    root.set("errors", str(sum(int(s.get("errors", 0)) for s in root)))
    return root


def executed_notebook(notebook: Notebook, run: NotebookRun) -> dict:
    """``notebook`` with the outputs and execution counts of ``run`` (cells that did not
    run are left without outputs)."""
    document = copy.deepcopy(dict(notebook.document))
    ran: dict[int, CellRun] = {cell.index: cell for cell in run.cells}
    count = 0
    for index, cell in enumerate(document["cells"], start=1):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if index in ran:
            count += 1
            cell["outputs"] = [dict(output) for output in ran[index].outputs]
            cell["execution_count"] = count
    return document


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def notebook_path(user: str, name: str) -> PurePosixPath:
    """Where ``user``'s executed notebook ``name`` goes, relative to the output directory."""
    return PurePosixPath(NOTEBOOKS_DIR, _safe(user), name)


def write_reports(outcome: Outcome, out_dir: Path, strict: bool) -> list[Path]:
    """Write results.json, junit.xml, report.html and the executed notebooks into
    ``out_dir``; the files written."""
    # here, not at the top: the HTML report builds on this module's counts and paths
    from .html_report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results = out_dir / RESULTS_JSON
    results.write_text(json.dumps(results_document(outcome, strict), indent=2) + "\n")
    written.append(results)
    junit = out_dir / JUNIT_XML
    tree = ElementTree.ElementTree(junit_document(outcome, strict))
    ElementTree.indent(tree)
    tree.write(junit, encoding="utf-8", xml_declaration=True)
    written.append(junit)
    page = out_dir / REPORT_HTML
    page.write_text(render_report(outcome, strict), encoding="utf-8")
    written.append(page)
    notebooks = dict(outcome.plan.notebooks)
    for result in outcome.results:
        if result.run is None:
            continue
        path = out_dir / notebook_path(result.user, result.entry.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = executed_notebook(notebooks[result.entry], result.run)
        path.write_text(json.dumps(document, indent=1) + "\n")
        written.append(path)
    return written

"""The benchmark's HTML report (aglais_hub/benchmark/html_report.py, written by
report.write_reports): the duration plot, the timeline, the header and the table on a run
built from real results; then a real run of `aglais-hub benchmark` against the session's
demo platform whose report.html is opened in Chromium (Playwright), as an admin opens it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

import pytest
import requests
from PIL import Image

from aglais_hub.benchmark.driver import CellRun, Notebook, NotebookRun
from aglais_hub.benchmark.html_report import COLOURS, nice_ticks, render_report
from aglais_hub.benchmark.report import REPORT_HTML, write_reports
from aglais_hub.benchmark.run import (
    Outcome,
    Placement,
    Plan,
    ServerStart,
    UserToken,
    failed_result,
    result_of,
)
from aglais_hub.benchmark.suite import NotebookEntry
from aglais_hub.benchmark.verdict import Verdict
from aglais_hub.testing.hubclient import HubClient

SVG = "{http://www.w3.org/2000/svg}"
SHORT = "07-library-versions.ipynb"
HOSTILE = "<script>alert('owned')</script>"
REFUSED = "the hub refused to start carol's server: 429: <b>over quota</b>"


# -- a run built from real results ----------------------------------------------------------


def entry(name: str, seconds: float) -> NotebookEntry:
    return NotebookEntry(Path(f"/suite/{name}"), seconds=seconds, figures=0, outputs=())


def notebook(an_entry: NotebookEntry) -> Notebook:
    cell = {"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": []}
    return Notebook(an_entry.path, {"nbformat": 4, "cells": [cell], "metadata": {}})


def ok_run(seconds: float) -> NotebookRun:
    output = {"output_type": "stream", "name": "stdout", "text": "done: 1\n"}
    return NotebookRun(seconds, (CellRun(1, "ok", seconds, (output,)),))


def broken_run(seconds: float) -> NotebookRun:
    """A cell whose error and traceback carry markup, as any kernel's output may."""
    error = {
        "output_type": "error",
        "ename": "RuntimeError",
        "evalue": HOSTILE,
        "traceback": [
            "\x1b[31mTraceback (most recent call last)\x1b[0m",
            f"RuntimeError: {HOSTILE}",
        ],
    }
    return NotebookRun(seconds, (CellRun(1, "error", seconds, (error,)),))


A = entry("01-alpha.ipynb", 20.0)
B = entry("02-beta.ipynb", 10.0)
STARTED = datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC)


def make_outcome(slow_factor: float = 2.0, carol: bool = True) -> Outcome:
    """alice: A PASS, B SLOW; bob: A FAST, B ERROR (hostile output); carol's server
    booked server r7 does not start: two ERRORs that never ran."""
    users = [UserToken("alice", "t1"), UserToken("bob", "t2")]
    results = [
        result_of("alice", A, ok_run(18.0), slow_factor, began=5.0),
        result_of("alice", B, ok_run(25.0), slow_factor, began=23.5),
        result_of("bob", A, ok_run(8.0), slow_factor, began=4.0),
        result_of("bob", B, broken_run(3.0), slow_factor, began=12.5),
    ]
    starts = [ServerStart("alice", 0.2, 4.6, "started"), ServerStart("bob", 0.2, 3.5, "started")]
    if carol:
        users.append(UserToken("carol", "t3"))
        booked = Placement("r7", 7, "lab")
        results += [failed_result("carol", e, REFUSED, booked) for e in (A, B)]
        starts.append(ServerStart("carol", 0.2, 1.5, "failed", "r7"))
    plan = Plan(
        hub_url="https://hub.example.org/",
        users=tuple(users),
        notebooks=((A, notebook(A)), (B, notebook(B))),
        run_id="20261202-180000-abc123",
        slow_factor=slow_factor,
    )
    return Outcome(
        plan,
        results,
        warnings=[f"[bob] could not remove Benchmark/{HOSTILE}"],
        server_starts=starts,
        started=STARTED,
        finished=STARTED + timedelta(seconds=50.0),
    )


def svgs(page: str) -> dict[str, ElementTree.Element]:
    """Each inline SVG of ``page`` parsed on its own, by its kind (durations, timeline)."""
    found = {}
    rest = page
    while "<svg" in rest:
        start = rest.index("<svg")
        end = rest.index("</svg>", start) + len("</svg>")
        root = ElementTree.fromstring(rest[start:end])
        found[root.get("class").split()[-1]] = root
        rest = rest[end:]
    return found


def bars(page: str) -> list[ElementTree.Element]:
    return svgs(page)["durations"].findall(f".//{SVG}rect[@class='bar']")


def title(element: ElementTree.Element) -> str:
    return element.find(f"{SVG}title").text


# -- the duration plot ----------------------------------------------------------------------


def test_the_plot_has_a_bar_for_each_user_and_notebook_that_ran_saying_its_verdict():
    plot = svgs(render_report(make_outcome(), strict=False))["durations"]
    found = plot.findall(f".//{SVG}rect[@class='bar']")
    drawn = {(b.get("data-user"), b.get("data-notebook")): b for b in found}
    assert len(found) == len(drawn) == 2 * 2 > 0  # alice and bob ran both; carol neither
    assert set(drawn) == {(u, n.name) for u in ("alice", "bob") for n in (A, B)}
    expected = {
        ("alice", A.name): ("PASS", "18.0 s"),
        ("alice", B.name): ("SLOW", "25.0 s"),
        ("bob", A.name): ("FAST", "8.0 s"),
        ("bob", B.name): ("ERROR", "3.0 s"),
    }
    for (user, name), (verdict, seconds) in expected.items():
        bar = drawn[user, name]
        assert bar.get("data-verdict") == verdict
        assert bar.get("fill") == COLOURS[Verdict(verdict)]
        wanted = A.seconds if name == A.name else B.seconds
        assert title(bar) == f"{user} · {name}: {verdict}, {seconds} (expected {wanted:g} s)"
    # the word is beside each bar too, not only in its colour
    labels = {t.text for t in plot.iter(f"{SVG}text")}
    assert {"18.0 s PASS", "25.0 s SLOW", "8.0 s FAST", "3.0 s ERROR"} <= labels


def test_bar_lengths_are_proportional_to_the_seconds_from_one_origin():
    found = bars(render_report(make_outcome(), strict=False))
    assert found
    assert len({b.get("x") for b in found}) == 1
    per_second = [float(b.get("width")) / float(b.get("data-seconds")) for b in found]
    assert per_second[0] > 0
    assert per_second == pytest.approx([per_second[0]] * len(found), rel=1e-3)
    widths = {b.get("data-seconds"): float(b.get("width")) for b in found}
    assert widths["25.000"] == pytest.approx(widths["18.000"] * 25 / 18)


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_the_expected_time_and_the_slow_and_fast_thresholds_are_marked_per_notebook(factor):
    root = svgs(render_report(make_outcome(slow_factor=factor), strict=False))["durations"]
    found = root.findall(f".//{SVG}rect[@class='bar']")
    origin = float(found[0].get("x"))
    per_second = float(found[0].get("width")) / float(found[0].get("data-seconds"))
    groups = root.findall(f".//{SVG}g[@class='thresholds']")
    assert [g.get("data-notebook") for g in groups] == [A.name, B.name]
    for group in groups:
        expected = A.seconds if group.get("data-notebook") == A.name else B.seconds
        lines = {line.get("class").split()[1]: line for line in group.iter(f"{SVG}line")}
        wanted = {"expected": expected, "slow": factor * expected, "fast": expected / 2}
        assert set(lines) == set(wanted)
        for kind, seconds in wanted.items():
            x = float(lines[kind].get("x1"))
            assert (x - origin) / per_second == pytest.approx(seconds, abs=0.05)
        assert f"SLOW over {factor * expected:g} s" in title(lines["slow"])
        assert lines["slow"].get("stroke-dasharray") != lines["fast"].get("stroke-dasharray")
        # the marks span exactly the group's bars
        mine = [b for b in found if b.get("data-notebook") == group.get("data-notebook")]
        top, bottom = float(lines["expected"].get("y1")), float(lines["expected"].get("y2"))
        assert len(mine) == 2
        for bar in found:
            inside = top <= float(bar.get("y")) <= bottom
            assert inside == (bar in mine)


def test_the_axis_reaches_past_the_slowest_bar_and_threshold():
    assert nice_ticks(47) == [0, 10, 20, 30, 40, 50]
    assert nice_ticks(50) == [0, 10, 20, 30, 40, 50]
    assert nice_ticks(0.7) == [0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(0) == [0, 1]
    root = svgs(render_report(make_outcome(), strict=False))["durations"]
    ticks = [t.text for t in root.find(f".//{SVG}g[@class='axis']").iter(f"{SVG}text")]
    assert ticks[0] == "0" and float(ticks[-2]) >= 40  # B's SLOW threshold, 2 × 20 s
    assert ticks[-1] == "seconds"


# -- the timeline ---------------------------------------------------------------------------


def test_the_timeline_has_a_lane_per_user_with_the_start_then_the_notebooks_in_order():
    root = svgs(render_report(make_outcome(), strict=False))["timeline"]
    lanes = root.findall(f".//{SVG}g[@class='lane']")
    assert [lane.get("data-user") for lane in lanes] == ["alice", "bob", "carol"]
    rows = [{float(r.get("y")) for r in lane.iter(f"{SVG}rect")} for lane in lanes]
    assert all(len(row) == 1 for row in rows)  # a lane is one row
    assert sorted(rows, key=min) == rows and len({min(r) for r in rows}) == 3  # top to bottom
    spans = {lane.get("data-user"): list(lane.iter(f"{SVG}rect")) for lane in lanes}
    assert [s.get("class") for s in spans["alice"]] == ["span server", *["span notebook"] * 2]
    assert [s.get("data-notebook") for s in spans["alice"][1:]] == [A.name, B.name]
    assert [s.get("data-verdict") for s in spans["bob"][1:]] == ["FAST", "ERROR"]
    # one scale: x is proportional to when each began, and nothing overlaps in a lane
    everything = [s for lane in spans.values() for s in lane]
    origin = min(float(s.get("x")) for s in everything)
    assert origin > 0
    scales = [
        (float(s.get("x")) - origin) / (float(s.get("data-began")) - 0.2)
        for s in everything
        if float(s.get("data-began")) > 0.2
    ]
    assert len(scales) == 4 and scales[0] > 0
    assert scales == pytest.approx([scales[0]] * 4, rel=1e-3)
    per_second = scales[0]
    for lane in spans.values():
        for before, after in zip(lane, lane[1:], strict=False):
            assert float(before.get("x")) + float(before.get("width")) <= float(after.get("x"))
    assert "alice · 02-beta.ipynb: SLOW, 25.0 s (from 23.5 s to 48.5 s)" in title(spans["alice"][2])
    # carol's server failed: the start is drawn as failed, her notebooks are not drawn
    assert [s.get("data-state") for s in spans["carol"]] == ["failed"]
    assert "carol: server r7 failed after 1.5 s" == title(spans["carol"][0])
    assert "alice: default server started after 4.6 s" == title(spans["alice"][0])
    finish = root.find(f".//{SVG}line[@class='finish']")
    assert (float(finish.get("x1")) - origin) / (50.0 - 0.2) == pytest.approx(per_second, rel=1e-3)


def test_a_notebook_that_never_ran_is_listed_not_drawn():
    page = render_report(make_outcome(), strict=False)
    drawn = [b.get("data-user") for b in bars(page)]
    assert drawn and "carol" not in drawn
    section = page[page.index('<section class="not-run">') :]
    section = section[: section.index("</section>")]
    assert "Not run (2)" in section
    for name in (A.name, B.name):
        assert f"carol · {name}" in section
    assert "over quota" in section and "<b>over quota" not in section  # the hub's words, escaped
    # every run ran: no such section
    assert 'class="not-run"' not in render_report(make_outcome(carol=False), strict=False)


# -- the page -------------------------------------------------------------------------------


class WellFormed(HTMLParser):
    """Every element closed, in order (void elements apart): what html.parser's leniency
    would otherwise let pass."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_the_page_is_well_formed_html_with_accessible_svgs():
    page = render_report(make_outcome(), strict=False)
    parser = WellFormed()
    parser.feed(page)
    parser.close()
    assert parser.problems == [] and parser.open == []
    assert page.startswith("<!DOCTYPE html>")
    assert "script" not in parser.tags  # no JavaScript
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    found = svgs(page)
    assert set(found) == {"durations", "timeline"}
    for root in found.values():
        assert root.get("role") == "img" and root.get("aria-label")
        assert root.find(f"{SVG}title").text == root.get("aria-label")
    # every bar and span says its verdict in words, in its tooltip
    shapes = bars(page) + found["timeline"].findall(f".//{SVG}rect[@class='span notebook']")
    assert len(shapes) == 8
    assert all(s.get("data-verdict") in title(s) for s in shapes)


def test_untrusted_output_is_escaped_everywhere():
    page = render_report(make_outcome(), strict=False)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page
    row = page[page.index('<tr class="result verdict-ERROR" data-user="bob"') :]
    row = row[: row.index("</tr>")]
    assert "cell 1: RuntimeError: &lt;script&gt;" in row  # the error
    assert "Traceback of cell 1" in row and "Traceback (most recent call last)" in row
    assert "\x1b" not in page  # the traceback's colours are stripped
    assert "could not remove Benchmark/&lt;script&gt;" in page  # a warning


def test_the_header_says_the_run_the_counts_and_what_the_exit_status_means():
    page = render_report(make_outcome(), strict=False)
    assert "<h1>Benchmark run 20261202-180000-abc123</h1>" in page
    assert '<a href="https://hub.example.org/">https://hub.example.org/</a>' in page
    assert "2026-12-02 18:00:00 UTC" in page and "2026-12-02 18:00:50 UTC" in page
    assert "alice, bob, carol" in page
    for verdict, n in (("PASS", 1), ("SLOW", 1), ("FAST", 1), ("ERROR", 3)):
        assert f">{verdict}</span> {n}</li>" in page
    assert "FAILED (exit status 1): 3 ERROR</p>" in page
    assert "Warnings (1)" in page
    strict = render_report(make_outcome(), strict=True)
    assert "FAILED (exit status 1): 1 SLOW, 1 FAST, 3 ERROR (--strict)" in strict
    clean = make_outcome(carol=False)
    clean.results = [r for r in clean.results if r.verdict is Verdict.PASS]
    assert "PASSED (exit status 0): no notebook is ERROR</p>" in render_report(clean, False)


def test_the_table_has_every_result_and_its_links_open_the_executed_notebooks(tmp_path):
    outcome = make_outcome()
    # a user outside the plan (and a name that is not a safe file name): still one lane
    outcome.results.append(result_of("eve / ops", A, ok_run(15.0), 2.0, began=1.0))
    outcome.results.append(result_of("eve / ops", B, ok_run(9.0), 2.0, began=16.0))
    written = write_reports(outcome, tmp_path, strict=False)
    report = tmp_path / REPORT_HTML
    assert report in written and report.is_file()
    page = report.read_text(encoding="utf-8")
    rows = page.count('<tr class="result ')
    assert rows == len(outcome.results) == 8
    # the Server column: which server each notebook ran on, a booking's with its size
    assert '<th scope="col">Server</th>' in page
    assert page.count("<td>the default server</td>") == 6  # alice, bob and eve
    assert page.count("<td>r7 (booking 7, lab)</td>") == 2  # carol's booked server
    lanes = svgs(page)["timeline"].findall(f".//{SVG}g[@class='lane']")
    assert [lane.get("data-user") for lane in lanes] == ["alice", "bob", "carol", "eve / ops"]
    hrefs = [
        part.split('"', 1)[0]
        for part in page.split('<a href="')[1:]
        if part.startswith("notebooks")
    ]
    assert len(hrefs) == 6  # every result that ran; carol's two did not
    for href in hrefs:
        executed = json.loads((tmp_path / unquote(href)).read_text())
        assert executed["cells"][0]["outputs"]  # the run's own outputs
    assert "notebooks/eve%20_%20ops/01-alpha.ipynb" not in hrefs  # the file's name is safe
    assert "notebooks/eve___ops/01-alpha.ipynb" in hrefs


# -- end to end: a real run, opened in Chromium ---------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def alice_server(platform, token: str) -> dict | None:
    response = requests.get(f"{platform.url}hub/api/users/alice", headers=auth(token), timeout=30)
    response.raise_for_status()
    return response.json()["servers"].get("")


def stop_alice(platform, token: str) -> None:
    requests.delete(f"{platform.url}hub/api/users/alice/server", headers=auth(token), timeout=60)
    deadline = time.monotonic() + 60
    while alice_server(platform, token) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alice_server(platform, token) is None


@pytest.fixture(scope="module")
def real_run(platform, tmp_path_factory) -> dict:
    """07-library-versions for alice, as the real command (a subprocess: Playwright's
    loop must not meet the command's asyncio.run), her server stopped first so the run
    starts it and must stop it. A slow factor of 10: the shared two cores may be busy,
    and the verdict the report shows is what this test checks."""
    client = HubClient(platform.url)
    client.login("alice", "alice")
    token = client.new_token("benchmark report test")
    if alice_server(platform, token):
        stop_alice(platform, token)
    directory = tmp_path_factory.mktemp("report")
    tokens = directory / "tokens.txt"
    tokens.write_text(f"alice {token}\n")
    out = directory / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--hub", platform.url,
         "--tokens", str(tokens), "--only", SHORT, "--slow-factor", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    print(done.stdout, done.stderr, sep="\n")
    return {"done": done, "out": out, "token": token}


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_report_of_a_real_run_opens_in_the_browser_and_shows_the_plot(
    platform, real_run, browser, tmp_path
):
    done, out = real_run["done"], real_run["out"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert alice_server(platform, real_run["token"]) is None  # started by the run: stopped
    (result,) = json.loads((out / "results.json").read_text())["results"]
    assert result["verdict"] == "PASS", result
    seconds = f"{result['seconds']:.1f} s"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto((out / REPORT_HTML).as_uri())
        assert "PASSED (exit status 0)" in page.locator("p.outcome").inner_text()
        plot = page.locator("svg.durations")
        plot.wait_for(state="visible", timeout=10000)
        box = plot.bounding_box()
        assert box["width"] > 300 and box["height"] > 80
        bar = plot.locator(f'rect.bar[data-user="alice"][data-notebook="{SHORT}"]')
        assert bar.count() == 1
        assert bar.bounding_box()["width"] > 1
        assert bar.locator("title").text_content() == (
            f"alice · {SHORT}: PASS, {seconds} (expected {result['expected_seconds']:g} s)"
        )
        assert f"{seconds} PASS" in plot.inner_html()
        slow = plot.locator("line.threshold.slow")
        assert slow.get_attribute("data-seconds") == f"{10 * result['expected_seconds']:g}"

        lane = page.locator('svg.timeline g.lane[data-user="alice"]')
        assert lane.is_visible()
        assert lane.locator("rect.server").get_attribute("data-state") == "started"
        span = lane.locator(f'rect.notebook[data-notebook="{SHORT}"]')
        assert span.bounding_box()["x"] > lane.locator("rect.server").bounding_box()["x"]
        assert "PASS" in span.locator("title").text_content()

        row = page.locator('table.results tr[data-user="alice"]')
        assert row.count() == 1
        cells = row.locator("td").all_inner_texts()
        assert cells[:4] == ["alice", "the default server", SHORT, "PASS"]
        assert cells[4] == seconds[:-2]
        link = row.locator("a").get_attribute("href")
        assert json.loads((out / unquote(link)).read_text())["cells"]

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # not blank
    green = tuple(int(COLOURS[Verdict.PASS][i : i + 2], 16) for i in (1, 3, 5))
    assert sum(n for n, colour in colours if colour == green) > 100  # the PASS bar, drawn

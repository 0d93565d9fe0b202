"""The benchmark's HTML report (``report.html``): one self-contained page for an admin to
open after a run. A header (the run, the hub, its times, the counts per verdict, the
outcome and the warnings), a plot of the durations per notebook and user, a timeline of
the run (a lane per user: the server's start, then each notebook) and a table of every
result with its errors, its first traceback and a link to the executed notebook.

No JavaScript and nothing fetched: the CSS is inline and the plots are SVG built here
(the hub image ships no plotting library). A kernel's output is untrusted text, so
every text and attribute goes through `html.escape`, and the page's Content Security
Policy allows no script at all. Pure: every function returns text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from .hub import valid_hub_url
from .report import NOTEBOOKS_DIR, counts, notebook_path
from .run import Outcome, Result, ServerStart
from .verdict import FAST_FRACTION, Verdict, exit_status, fails

# Okabe and Ito's palette, told apart with the common colour blindnesses; the verdict's
# word is beside every bar, in every tooltip and in the table too
COLOURS = {
    Verdict.PASS: "#009e73",
    Verdict.SLOW: "#e69f00",
    Verdict.FAST: "#56b4e9",
    Verdict.ERROR: "#d55e00",
}
SERVER_COLOUR = "#b3b3b3"
FAILED_SERVER_COLOUR = "#7f7f7f"
INK = "#222222"
GRID = "#e3e3e3"
FONT = 12  # px, SVG text
SVG_NS = "http://www.w3.org/2000/svg"

# the duration plot's geometry (px)
BAR_H, BAR_GAP, HEAD_H, GROUP_GAP = 16, 5, 22, 10
PLOT_W, VALUE_W, LEGEND_H, AXIS_H = 560, 120, 30, 44
# the timeline's
LANE_H, SPAN_H, TIMELINE_W = 30, 18, 680


@dataclass(frozen=True)
class Scale:
    """Seconds to x: ``left`` is 0 s, ``left + width`` is ``top`` seconds."""

    left: float
    width: float
    top: float

    def x(self, seconds: float) -> float:
        """Where ``seconds`` falls."""
        return self.left + self.width * max(seconds, 0.0) / self.top

    def length(self, seconds: float) -> float:
        """How long ``seconds`` is drawn."""
        return self.width * max(seconds, 0.0) / self.top


def nice_ticks(maximum: float, intervals: int = 5) -> list[float]:
    """Ticks from 0 up to the first at or past ``maximum``, a step of 1, 2 or 5 × a power
    of ten making about ``intervals`` intervals; [0, 1] when there is nothing to show."""
    if not maximum > 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    rough = maximum / intervals
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))
    steps = max(1, math.ceil(maximum / step - 1e-9))
    return [round(i * step, 9) for i in range(steps + 1)]


def ran(result: Result) -> bool:
    """Whether the notebook ran (so it has a duration and a place on the timeline)."""
    return result.began is not None and result.run is not None


def slow_threshold(result: Result, slow_factor: float) -> float:
    """Seconds past which ``result``'s notebook is SLOW."""
    return slow_factor * result.entry.seconds


def fast_threshold(result: Result) -> float:
    """Seconds under which ``result``'s notebook is FAST."""
    return FAST_FRACTION * result.entry.seconds


# -- SVG pieces -----------------------------------------------------------------------------


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _attrs(attrs: Mapping[str, object]) -> str:
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        text = _number(value) if isinstance(value, float) else str(value)
        parts.append(f' {name}="{escape(text)}"')
    return "".join(parts)


def element(name: str, attrs: Mapping[str, object], *content: str) -> str:
    """An SVG element; ``content`` is markup already (escape text with `escape`)."""
    if not content:
        return f"<{name}{_attrs(attrs)}/>"
    return f"<{name}{_attrs(attrs)}>{''.join(content)}</{name}>"


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _text(x: float, y: float, text: str, **attrs: object) -> str:
    return element("text", {"x": float(x), "y": float(y), **attrs}, escape(text))


def _text_width(text: str, size: float = FONT) -> float:
    return 0.6 * size * len(text)  # near enough for a sans-serif at ``size``


def _svg(kind: str, label: str, width: float, height: float, body: Iterable[str]) -> str:
    # the XML namespace keeps each SVG a well-formed document of its own too
    return element(
        "svg",
        {
            "xmlns": SVG_NS,
            "class": f"plot {kind}",
            "role": "img",
            "aria-label": label,
            "width": float(width),
            "height": float(height),
            "viewBox": f"0 0 {_number(width)} {_number(height)}",
            "font-family": "sans-serif",
            "font-size": FONT,
        },
        _title(label),
        *body,
    )


def _axis(scale: Scale, ticks: Sequence[float], top: float, bottom: float, caption: str) -> str:
    """Grid lines from ``top`` to ``bottom`` at the ticks, the axis below, its caption."""
    parts = []
    for tick in ticks:
        x = scale.x(tick)
        parts.append(element("line", {"x1": x, "x2": x, "y1": top, "y2": bottom, "stroke": GRID}))
        tick_mark = {"x1": x, "x2": x, "y1": bottom, "y2": bottom + 5.0, "stroke": INK}
        parts.append(element("line", tick_mark))
        parts.append(_text(x, bottom + 18, f"{tick:g}", **{"text-anchor": "middle"}))
    right = scale.left + scale.width
    line = {"x1": scale.left, "x2": right, "y1": bottom, "y2": bottom, "stroke": INK}
    parts.append(element("line", line))
    middle = scale.left + scale.width / 2
    parts.append(_text(middle, bottom + 36, caption, **{"text-anchor": "middle"}))
    return element("g", {"class": "axis", "fill": INK}, *parts)


def _legend(items: Sequence[tuple[str, str]], y: float) -> str:
    """A row of ``(swatch markup at 0,0, label)``, left to right from x = 8."""
    parts, x = [], 8.0
    for swatch, label in items:
        parts.append(element("g", {"transform": f"translate({_number(x)},{_number(y)})"}, swatch))
        parts.append(_text(x + 22, y + 11, label))
        x += 22 + _text_width(label) + 18
    return element("g", {"class": "legend"}, *parts)


def _swatch(colour: str) -> str:
    return element("rect", {"width": 16, "height": 12, "fill": colour, "stroke": INK})


def _line_sample(dash: str | None) -> str:
    attrs = {"x1": 0, "x2": 16, "y1": 6, "y2": 6, "stroke": INK, "stroke-width": 2}
    return element("line", {**attrs, "stroke-dasharray": dash})


THRESHOLDS = (
    ("expected", None, "expected time"),
    ("slow", "6 3", "SLOW threshold"),
    ("fast", "2 3", "FAST threshold"),
)


def _verdict_legend(y: float, before: Sequence[tuple[str, str]] = ()) -> str:
    verdicts = [(_swatch(COLOURS[v]), v.value) for v in Verdict]
    return _legend([*before, *verdicts], y)


# -- the duration plot ----------------------------------------------------------------------


def _by_notebook(outcome: Outcome, results: Sequence[Result]) -> list[tuple[str, list[Result]]]:
    """``results`` grouped by notebook in suite order (users in plan order within)."""
    names = [entry.name for entry, _ in outcome.plan.notebooks]
    order = list(dict.fromkeys(names + [r.entry.name for r in results]))
    groups = [(name, [r for r in results if r.entry.name == name]) for name in order]
    return [(name, rows) for name, rows in groups if rows]


def _label_width(names: Iterable[str]) -> float:
    return min(240.0, max([64.0, *(_text_width(n) + 20 for n in names)]))


def duration_plot(outcome: Outcome) -> str:
    """The SVG of the seconds each notebook took for each user that ran it: a group of
    bars per notebook (a bar per user, coloured by verdict, its seconds and verdict
    beside it and in its tooltip) with the notebook's expected time, SLOW threshold
    (slow factor × expected) and FAST threshold (half) marked across the group.
    Empty when no notebook ran."""
    drawn = [r for r in outcome.results if ran(r)]
    if not drawn:
        return ""
    factor = outcome.plan.slow_factor
    left = _label_width(r.user for r in drawn)
    top_seconds = max(max(r.seconds, slow_threshold(r, factor)) for r in drawn)
    ticks = nice_ticks(top_seconds)
    scale = Scale(left, PLOT_W, ticks[-1])
    groups = _by_notebook(outcome, drawn)
    parts: list[str] = []
    y = LEGEND_H + 8.0
    plot_top = y
    for name, rows in groups:
        parts.append(_text(8, y + 15, name, **{"font-weight": "bold", "class": "notebook"}))
        y += HEAD_H
        group_top = y
        for result in rows:
            parts.append(_bar(result, scale, y))
            y += BAR_H + BAR_GAP
        parts.append(_thresholds(rows[0], factor, scale, group_top - 3, y - BAR_GAP + 3))
        y += GROUP_GAP
    axis = _axis(scale, ticks, plot_top, y, "seconds")
    legend = _verdict_legend(
        8,
        [(_line_sample(dash), label) for _, dash, label in THRESHOLDS],
    )
    label = (
        f"Durations of {_count(len(groups), 'notebook')} for "
        f"{_count(len({r.user for r in drawn}), 'user')}: "
        f"seconds per notebook and user, coloured by verdict, with each notebook's "
        f"expected time and its SLOW ({factor:g} × expected) and FAST (half) thresholds"
    )
    width = left + PLOT_W + VALUE_W
    return _svg("durations", label, width, y + AXIS_H, [axis, legend, *parts])


def _bar(result: Result, scale: Scale, y: float) -> str:
    verdict = result.verdict.value
    seconds = f"{result.seconds:.1f} s"
    tooltip = (
        f"{result.user} · {result.entry.name}: {verdict}, {seconds} "
        f"(expected {result.entry.seconds:g} s)"
    )
    bar = element(
        "rect",
        {
            "class": "bar",
            "data-user": result.user,
            "data-notebook": result.entry.name,
            "data-verdict": verdict,
            "data-seconds": f"{result.seconds:.3f}",
            "x": scale.left,
            "y": y,
            "width": max(scale.length(result.seconds), 0.0),
            "height": float(BAR_H),
            "fill": COLOURS[result.verdict],
            "stroke": INK,
            "stroke-width": 0.5,
        },
        _title(tooltip),
    )
    middle = y + BAR_H / 2 + 4
    user = _text(scale.left - 8, middle, result.user, **{"text-anchor": "end"})
    # a white halo keeps the label readable where a threshold line crosses it
    value = _text(
        scale.x(result.seconds) + 6,
        middle,
        f"{seconds} {verdict}",
        **{"stroke": "#ffffff", "stroke-width": 3, "paint-order": "stroke"},
    )
    return element("g", {}, user, bar, value)


def _thresholds(result: Result, factor: float, scale: Scale, top: float, bottom: float) -> str:
    expected = result.entry.seconds
    marks = {
        "expected": (expected, f"expected {expected:g} s"),
        "slow": (slow_threshold(result, factor), f"SLOW over {factor * expected:g} s"),
        "fast": (fast_threshold(result), f"FAST under {FAST_FRACTION * expected:g} s"),
    }
    lines = []
    for kind, dash, _ in THRESHOLDS:
        seconds, tooltip = marks[kind]
        x = scale.x(seconds)
        attrs = {
            "class": f"threshold {kind}",
            "data-seconds": f"{seconds:g}",
            "x1": x,
            "x2": x,
            "y1": top,
            "y2": bottom,
            "stroke": INK,
            "stroke-width": 2,
            "stroke-dasharray": dash,
        }
        lines.append(element("line", attrs, _title(f"{result.entry.name}: {tooltip}")))
    return element("g", {"class": "thresholds", "data-notebook": result.entry.name}, *lines)


# -- the timeline ---------------------------------------------------------------------------


def _run_seconds(outcome: Outcome) -> float:
    if outcome.finished is None:
        return 0.0
    return max((outcome.finished - outcome.started).total_seconds(), 0.0)


def timeline(outcome: Outcome) -> str:
    """The SVG of the run in time: a lane per user (plan order) with the server's start
    and then each notebook that ran, from when it began for as long as it took, coloured
    by verdict; the axis in seconds since the run began, the run's end marked."""
    # plan order, then anyone else the results or starts name (each once)
    named = [u.name for u in outcome.plan.users] + [r.user for r in outcome.results]
    users = list(dict.fromkeys(named + [s.user for s in outcome.server_starts]))
    if not users:
        return ""
    drawn = [r for r in outcome.results if ran(r)]
    ends = [s.began + s.seconds for s in outcome.server_starts]
    ends += [r.began + r.seconds for r in drawn]  # type: ignore[operator]
    total = _run_seconds(outcome)
    ticks = nice_ticks(max([total, *ends]))
    left = _label_width(users)
    scale = Scale(left, TIMELINE_W, ticks[-1])
    top = LEGEND_H + 8.0
    lanes = []
    for index, user in enumerate(users):
        y = top + index * LANE_H
        starts = [s for s in outcome.server_starts if s.user == user]
        results = [r for r in drawn if r.user == user]
        lanes.append(_lane(user, starts, results, scale, y))
    bottom = top + len(users) * LANE_H
    parts = [_axis(scale, ticks, top, bottom, "seconds since the run began"), *lanes]
    if total:
        x = scale.x(total)
        parts.append(
            element(
                "line",
                {
                    "class": "finish",
                    "x1": x,
                    "x2": x,
                    "y1": top - 4,
                    "y2": bottom,
                    "stroke": INK,
                    "stroke-dasharray": "4 2",
                },
                _title(f"the run finished after {total:.1f} s"),
            )
        )
    parts.append(
        _verdict_legend(
            8,
            [
                (_swatch(SERVER_COLOUR), "server start"),
                (_swatch(FAILED_SERVER_COLOUR), "server failed"),
            ],
        )
    )
    label = (
        f"Timeline of the run: a lane for each of {_count(len(users), 'user')} with the "
        "server's start, then each notebook from when it began for as long as it took, "
        "coloured by verdict"
    )
    return _svg("timeline", label, left + TIMELINE_W + 24, bottom + AXIS_H, parts)


def _lane(
    user: str, starts: Sequence[ServerStart], results: Sequence[Result], scale: Scale, y: float
) -> str:
    middle = y + LANE_H / 2
    parts = [_text(scale.left - 8, middle + 4, user, **{"text-anchor": "end"})]
    span_y = middle - SPAN_H / 2
    for start in starts:
        failed = start.state == "failed"
        server = f"server {start.server_name}" if start.server_name else "default server"
        tooltip = f"{user}: {server} {start.state} after {start.seconds:.1f} s"
        parts.append(
            _span(
                "server",
                {"data-state": start.state, "data-server": start.server_name},
                scale,
                start.began,
                start.seconds,
                span_y,
                FAILED_SERVER_COLOUR if failed else SERVER_COLOUR,
                tooltip,
                "",
            )
        )
    for r in results:
        began = r.began or 0.0
        tooltip = (
            f"{user} · {r.entry.name}: {r.verdict}, {r.seconds:.1f} s "
            f"(from {began:.1f} s to {began + r.seconds:.1f} s)"
        )
        attrs = {"data-notebook": r.entry.name, "data-verdict": r.verdict.value}
        parts.append(
            _span(
                "notebook",
                attrs,
                scale,
                began,
                r.seconds,
                span_y,
                COLOURS[r.verdict],
                tooltip,
                r.entry.path.stem,
            )
        )
    return element("g", {"class": "lane", "data-user": user}, *parts)


def _span(
    kind: str,
    attrs: Mapping[str, object],
    scale: Scale,
    began: float,
    seconds: float,
    y: float,
    colour: str,
    tooltip: str,
    label: str,
) -> str:
    width = max(scale.length(seconds), 1.0)  # an instant still shows
    rect = element(
        "rect",
        {
            "class": f"span {kind}",
            **attrs,
            "data-began": f"{began:.3f}",
            "data-seconds": f"{seconds:.3f}",
            "x": scale.x(began),
            "y": y,
            "width": width,
            "height": float(SPAN_H),
            "fill": colour,
            "stroke": INK,
            "stroke-width": 0.5,
        },
        _title(tooltip),
    )
    if not label or _text_width(label, 10) + 6 > width:
        return rect
    text = _text(scale.x(began) + 3, y + SPAN_H / 2 + 3.5, label, **{"font-size": 10})
    # the label is inside the span: hovering it shows the span's tooltip too
    return element("g", {}, rect, text.replace("</text>", f"{_title(tooltip)}</text>"))


# -- the page -------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; color: #222; margin: 1.5rem auto; max-width: 72rem;
       padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.run dt { font-weight: 600; } dl.run dd { margin: 0; }
.outcome { font-size: 1.1rem; font-weight: 600; padding: .5rem .75rem; border-radius: .25rem;
           border: 2px solid; display: inline-block; }
.outcome.passed { border-color: #009e73; } .outcome.failed { border-color: #d55e00; }
ul.counts { list-style: none; padding: 0; display: flex; gap: .5rem; flex-wrap: wrap; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: .2rem;
         border: 1px solid #222; font-weight: 600; color: #000; }
figure { margin: 1rem 0; overflow-x: auto; } svg.plot { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9rem; }
table.results { border-collapse: collapse; width: 100%; font-size: .92rem; }
table.results th, table.results td { border-bottom: 1px solid #ddd; padding: .3rem .5rem;
                                     text-align: left; vertical-align: top; }
table.results td.num, table.results th.num { text-align: right; white-space: nowrap; }
pre { background: #f6f6f6; padding: .5rem; overflow: auto; max-height: 30rem;
      white-space: pre-wrap; word-break: break-word; font-size: .85rem; }
.detail ul { margin: .25rem 0; padding-left: 1.2rem; }
"""

# nothing runs and nothing is fetched, even if an output ever slipped past the escaping
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "not finished"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min {rest} s"
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def badge(verdict: Verdict | str) -> str:
    """The verdict's word on its colour."""
    colour = COLOURS.get(Verdict(verdict), "#fff")
    word = escape(str(verdict))
    return f'<span class="badge verdict-{word}" style="background:{colour}">{word}</span>'


def outcome_text(results: Sequence[Result], strict: bool) -> tuple[int, str]:
    """The exit status and what it means: ``FAILED (exit status 1): 2 ERROR``."""
    status = exit_status((r.verdict for r in results), strict)
    found = counts(results)
    if status == 0:
        which = "ERROR, SLOW or FAST (--strict)" if strict else "ERROR"
        return status, f"PASSED (exit status 0): no notebook is {which}"
    failing = ", ".join(
        f"{found[v.value]} {v}" for v in Verdict if found[v.value] and fails(v, strict)
    )
    return status, f"FAILED (exit status 1): {failing}" + (" (--strict)" if strict else "")


def _header(outcome: Outcome, strict: bool) -> str:
    plan = outcome.plan
    status, meaning = outcome_text(outcome.results, strict)
    hub = escape(plan.hub_url)
    hub_link = f'<a href="{hub}">{hub}</a>' if valid_hub_url(plan.hub_url) else hub
    users = ", ".join(escape(u.name) for u in plan.users)
    notebooks = ", ".join(escape(entry.name) for entry, _ in plan.notebooks)
    rows = [
        ("Hub", hub_link),
        ("Started", escape(_when(outcome.started))),
        ("Finished", escape(_when(outcome.finished))),
        ("Duration", _duration(_run_seconds(outcome)) if outcome.finished else "-"),
        (f"Users ({len(plan.users)})", users),
        (f"Notebooks ({len(plan.notebooks)})", notebooks),
        (
            "Limits",
            f"SLOW over {plan.slow_factor:g} × the expected time, FAST under half of it; "
            f"{plan.timeout:g} s per notebook; SLOW and FAST "
            + ("fail the run (--strict)" if strict else "do not fail the run"),
        ),
    ]
    found = counts(outcome.results)
    tally = "".join(f"<li>{badge(v)} {found[v.value]}</li>" for v in Verdict)
    warnings = (
        "<ul>" + "".join(f"<li>{escape(w)}</li>" for w in outcome.warnings) + "</ul>"
        if outcome.warnings
        else "<p>None.</p>"
    )
    return (
        f"<header><h1>Benchmark run {escape(plan.run_id)}</h1>"
        f'<p class="outcome {"passed" if status == 0 else "failed"}">{escape(meaning)}</p>'
        '<dl class="run">'
        + "".join(f"<dt>{escape(name)}</dt><dd>{value}</dd>" for name, value in rows)
        + f'</dl><ul class="counts" aria-label="results per verdict">{tally}</ul>'
        f"<p>{_count(len(outcome.results), 'result')}.</p></header>"
        f'<section class="warnings"><h2>Warnings ({len(outcome.warnings)})</h2>'
        f"{warnings}</section>"
    )


def _figure(svg: str, caption: str, empty: str) -> str:
    if not svg:
        return f"<p>{escape(empty)}</p>"
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _not_run(results: Sequence[Result]) -> str:
    missing = [r for r in results if not ran(r)]
    if not missing:
        return ""
    items = "".join(
        f"<li>{escape(r.user)} · {escape(r.entry.name)}: {badge(r.verdict)} "
        f"{escape(r.judgement.detail)}</li>"
        for r in missing
    )
    return (
        f'<section class="not-run"><h2>Not run ({len(missing)})</h2>'
        f"<p>Neither plotted nor on the timeline:</p><ul>{items}</ul></section>"
    )


def notebook_link(result: Result) -> str:
    """The executed notebook's address relative to the report (URL-quoted)."""
    return quote(notebook_path(result.user, result.entry.name).as_posix())


def _detail(result: Result) -> str:
    parts = [escape(result.judgement.detail)] if result.judgement.detail else []
    if result.verdict is Verdict.ERROR:
        for heading, lines in (("Errors", result.errors), ("Differences", result.differences)):
            # one line the detail already shows is not said twice
            if len(lines) > 1 or (lines and lines[0] not in result.judgement.detail):
                items = "".join(f"<li>{escape(line)}</li>" for line in lines)
                parts.append(f"<div>{heading}:<ul>{items}</ul></div>")
        cells = result.run.cells if result.run is not None else ()
        traced = next((cell for cell in cells if cell.traceback()), None)
        if traced is not None:
            parts.append(
                f"<details open><summary>Traceback of cell {traced.index}</summary>"
                f"<pre>{escape(traced.traceback())}</pre></details>"
            )
    return "".join(parts)


def _row(result: Result) -> str:
    name = escape(result.entry.name)
    notebook = f'<a href="{escape(notebook_link(result))}">{name}</a>' if result.run else name
    seconds = f"{result.seconds:.1f}" if result.run is not None else "-"
    began = f"{result.began:.1f}" if result.began is not None else "-"
    return (
        f'<tr class="result verdict-{result.verdict}" data-user="{escape(result.user)}" '
        f'data-notebook="{name}"><td>{escape(result.user)}</td>'
        f"<td>{escape(result.placement.label())}</td><td>{notebook}</td>"
        f'<td>{badge(result.verdict)}</td><td class="num">{seconds}</td>'
        f'<td class="num">{result.entry.seconds:g}</td><td class="num">{began}</td>'
        f'<td class="detail">{_detail(result)}</td></tr>'
    )


NUMERIC = ' class="num"'


def results_table(results: Sequence[Result]) -> str:
    """Every result: user, server, notebook (a link to the executed one), verdict, seconds,
    expected seconds, when it began and why; an ERROR with its errors, differences and
    first traceback."""
    head = "".join(
        f'<th scope="col"{NUMERIC if numeric else ""}>{name}</th>'
        for name, numeric in (
            ("User", False),
            ("Server", False),
            ("Notebook", False),
            ("Verdict", False),
            ("Seconds", True),
            ("Expected (s)", True),
            ("Began at (s)", True),
            ("Detail", False),
        )
    )
    rows = "".join(_row(result) for result in results)
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def render_report(outcome: Outcome, strict: bool) -> str:
    """The whole report.html of ``outcome`` (``strict``: as the run was judged)."""
    _, meaning = outcome_text(outcome.results, strict)
    factor = outcome.plan.slow_factor
    plot = _figure(
        duration_plot(outcome),
        f"Seconds each notebook took for each user. Solid line: the expected time; dashed: "
        f"SLOW over {factor:g} × expected; dotted: FAST under half of it.",
        "No notebook ran.",
    )
    line = _figure(
        timeline(outcome),
        "Each user's server start (grey), then each notebook, in seconds since the run "
        "began; the dashed line is the end of the run.",
        "Nothing to show.",
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Benchmark {escape(outcome.plan.run_id)}: {escape(meaning)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"{_header(outcome, strict)}"
        f'<section class="durations"><h2>Durations per notebook and user</h2>{plot}</section>'
        f'<section class="timeline"><h2>Timeline of the run</h2>{line}</section>'
        f"{_not_run(outcome.results)}"
        f'<section class="table"><h2>Results</h2>{results_table(outcome.results)}</section>'
        f"<footer><p>{escape(NOTEBOOKS_DIR)}/: the executed notebooks, with their outputs."
        "</p></footer></body></html>\n"
    )

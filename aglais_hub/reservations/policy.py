"""Capacity policy: pure functions over sizes, bookings and time.

A booking holds its size's footprint (`aglais_hub.offering.footprint`: the server's
pod and every executor pod) over ``[start, end + margin)``; the margin leaves time to
clean up before the next booking. A new booking fits when, at every instant of its
window, the footprints already booked plus its own plus the reserve kept for
unbooked servers fit in the platform's capacity. The check sweeps the start and
end events of the overlapping bookings, so it costs O(n log n) in the bookings
that overlap, not in all bookings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aglais_hub.offering import Resources


@dataclass(frozen=True)
class Span:
    """One booking's hold on capacity (``end`` already includes the margin)."""

    start: datetime
    end: datetime
    need: Resources


def usage_segments(spans: Iterable[Span]) -> list[tuple[datetime, datetime, Resources]]:
    """Piecewise-constant total use: ``(from, to, used)`` for every stretch with use > 0."""
    events: dict[datetime, Resources] = {}
    for span in spans:
        if span.end <= span.start:
            continue
        events[span.start] = events.get(span.start, Resources()) + span.need
        events[span.end] = events.get(span.end, Resources()) - span.need
    segments = []
    used = Resources()
    times = sorted(events)
    for here, following in zip(times, times[1:], strict=False):
        used = used + events[here]
        if used != Resources():
            segments.append((here, following, used))
    return segments


@dataclass(frozen=True)
class Conflict:
    """The whole stretch of a requested window where capacity runs out."""

    start: datetime
    end: datetime
    free: Resources  # the least free capacity (after the reserve) in that stretch
    need: Resources

    def message(self) -> str:
        return (
            f"The platform is fully booked from {iso(self.start)} to {iso(self.end)}: "
            f"at most {self.free.describe()} are free then, and this size needs "
            f"{self.need.describe()}."
        )


def clip(
    segments: Iterable[tuple[datetime, datetime, Resources]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, Resources]]:
    """Use over ``[start, end)`` as contiguous pieces, gaps filled with zero use.

    ``segments`` must be sorted and disjoint, as `usage_segments` returns them.
    """
    pieces = []
    cursor = start
    for seg_start, seg_end, used in segments:
        seg_start, seg_end = max(seg_start, start), min(seg_end, end)
        if seg_start >= seg_end:
            continue
        if cursor < seg_start:
            pieces.append((cursor, seg_start, Resources()))
        pieces.append((seg_start, seg_end, used))
        cursor = seg_end
    if cursor < end:
        pieces.append((cursor, end, Resources()))
    return pieces


def first_conflict(
    booked: Iterable[Span], wanted: Span, capacity: Resources, reserve: Resources = Resources()
) -> Conflict | None:
    """The first stretch of ``wanted`` over capacity (merged end to end), or None if it fits."""
    bookable = capacity - reserve
    start = end = least = None
    overlapping = (s for s in booked if s.start < wanted.end and s.end > wanted.start)
    for seg_start, seg_end, used in clip(usage_segments(overlapping), wanted.start, wanted.end):
        free = bookable - used
        if wanted.need.fits_in(free):
            if start is not None:
                break
            continue
        if start is None:
            start, least = seg_start, free
        end = seg_end
        least = Resources(min(least.millicores, free.millicores), min(least.memory, free.memory))
    if start is None:
        return None
    return Conflict(start, end, least, wanted.need)


def free_timeline(
    booked: Iterable[Span],
    start: datetime,
    end: datetime,
    capacity: Resources,
    reserve: Resources = Resources(),
) -> list[tuple[datetime, datetime, Resources]]:
    """Bookable capacity left over ``[start, end)``, as ``(from, to, free)`` pieces."""
    bookable = capacity - reserve
    overlapping = (s for s in booked if s.start < end and s.end > start)
    merged: list[tuple[datetime, datetime, Resources]] = []
    for a, b, used in clip(usage_segments(overlapping), start, end):
        free = bookable - used
        if merged and merged[-1][2] == free and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b, free)
        else:
            merged.append((a, b, free))
    return merged


def least_free(timeline: Iterable[tuple[datetime, datetime, Resources]]) -> Resources:
    """The smallest free cores and memory anywhere on a timeline."""
    pieces = list(timeline)
    if not pieces:
        return Resources()
    return Resources(min(p[2].millicores for p in pieces), min(p[2].memory for p in pieces))


def iso(when: datetime) -> str:
    """UTC, to the second, with a Z: how every time leaves the service."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

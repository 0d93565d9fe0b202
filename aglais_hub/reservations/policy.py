"""Capacity policy: pure functions over sizes, bookings and time.

A booking holds its size's footprint (driver + executors, each JVM's memory plus
Spark's overhead) over ``[start, end + margin)``; the margin leaves time to clean
up before the next booking. A new booking fits when, at every instant of its
window, the footprints already booked plus its own plus the reserve kept for
unbooked servers fit in the platform's capacity. The check sweeps the start and
end events of the overlapping bookings, so it costs O(n log n) in the bookings
that overlap, not in all bookings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aglais_hub.quantity import human_bytes
from aglais_hub.quotas import ClusterSize, parse_quantity


@dataclass(frozen=True, order=True)
class Resources:
    """CPU in millicores and memory in bytes (integers, so sums are exact)."""

    millicores: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.millicores + other.millicores, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.millicores - other.millicores, self.memory - other.memory)

    def __mul__(self, n: int) -> Resources:
        return Resources(self.millicores * n, self.memory * n)

    def fits_in(self, capacity: Resources) -> bool:
        return self.millicores <= capacity.millicores and self.memory <= capacity.memory

    def count_in(self, free: Resources) -> int:
        """How many of this footprint fit in ``free`` (0 when none)."""
        if free.millicores < 0 or free.memory < 0:
            return 0
        counts = []
        if self.millicores:
            counts.append(free.millicores // self.millicores)
        if self.memory:
            counts.append(free.memory // self.memory)
        return int(min(counts)) if counts else 0

    def describe(self) -> str:
        cores = self.millicores / 1000
        shown = f"{cores:g}" if cores == int(cores) else f"{cores:.1f}"
        noun = "core" if shown == "1" else "cores"
        return f"{shown} {noun} and {human_bytes(max(0, self.memory))}"

    def as_json(self) -> dict:
        return {"cores": self.millicores / 1000, "memory": self.memory}


def resources_from_values(spec: Mapping) -> Resources:
    """``{"cores": 16, "memory": "64Gi"}`` → Resources."""
    return Resources(round(float(spec["cores"]) * 1000), parse_quantity(spec["memory"]))


@dataclass(frozen=True)
class Overhead:
    """Spark's memory overhead on every JVM: max(factor × heap, minimum)."""

    factor: float = 0.1
    minimum: int = 384 * 2**20

    def of(self, heap: int) -> int:
        return heap + max(self.minimum, int(heap * self.factor))


def footprint(size: ClusterSize, overhead: Overhead) -> Resources:
    """What a server of ``size`` holds at full size: the driver and every executor."""
    driver = Resources(size.driver_cores * 1000, overhead.of(size.driver_memory))
    executor = Resources(size.executor_cores * 1000, overhead.of(size.executor_memory))
    return driver + executor * size.executors


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
    booked: Iterable[Span], start: datetime, end: datetime, capacity: Resources,
    reserve: Resources = Resources(),
) -> list[tuple[datetime, datetime, Resources]]:  # fmt: skip
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

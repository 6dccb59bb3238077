"""The last hour of each source, as the status page shows it: samples committed, pushes
refused and samples skipped per minute, and the intervals between its pushes.

Everything is read from the counters Telemetry keeps anyway, on a timer (`tick`), so the
push path does no work for it: a cumulative counter read once a minute gives the minute's
counts by difference, and `last_push` (the receipt time of a source's last committed push)
read every TICK_SECONDS gives each push interval longer than that exactly. Shorter
intervals are seen as about TICK_SECONDS, which does not matter: a source is stale after
twice its median interval but never sooner than MIN_STALE_SECONDS (5 min), so only
intervals above 2.5 min need to be right.

The figures are the service's on one box (under `--workers N`, every worker's); replicas
each count what they received, and after a restart the hour starts again.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from metrics_ingest.telemetry import LabelPairs, Telemetry

K = TypeVar("K", bound=Hashable)

TICK_SECONDS = 15.0
WINDOW_MINUTES = 60
INTERVALS_KEPT = 15  # push intervals per source the median is taken over
MIN_STALE_SECONDS = 300.0


class Rolling(Generic[K]):
    """A cumulative counter's counts over the last WINDOW_MINUTES minutes, to the minute.

    `advance` reads the counter once a minute and keeps only what changed since the last
    read, with running sums, so a source that pushes nothing costs nothing."""

    def __init__(self, start: Mapping[K, int]) -> None:
        self.last: dict[K, int] = dict(start)  # counted before the window began: not in it
        self.minutes: deque[tuple[int, dict[K, int]]] = deque()
        self.sums: dict[K, int] = {}

    def advance(self, minute: int, current: Mapping[K, int]) -> None:
        last = self.last
        delta = {key: value - last.get(key, 0) for key, value in current.items()
                 if value != last.get(key, 0)}
        self.last = dict(current)
        if delta:
            self.minutes.append((minute, delta))
            sums = self.sums
            for key, count in delta.items():
                sums[key] = sums.get(key, 0) + count
        self._expire(minute)

    def _expire(self, minute: int) -> None:
        sums = self.sums
        while self.minutes and self.minutes[0][0] <= minute - WINDOW_MINUTES:
            for key, count in self.minutes.popleft()[1].items():
                left = sums[key] - count
                if left:
                    sums[key] = left
                else:
                    del sums[key]

    def totals(self, minute: int, current: Mapping[K, int]) -> dict[K, int]:
        """The counts of the window, with what the counter gained since its last read."""
        self._expire(minute)
        totals = dict(self.sums)
        last = self.last
        for key, value in current.items():
            gained = value - last.get(key, 0)
            if gained:
                totals[key] = totals.get(key, 0) + gained
        return totals


class Activity:
    """What the status page knows of each source's last hour; one per app, ticked on the
    event loop (where Telemetry's counters change) with the service's counters as they are
    then (worker_telemetry.py: every worker's under `serve --workers`). `telemetry`: the
    counters at the start, before the hour."""

    def __init__(self, telemetry: Telemetry, now: float) -> None:
        self.started = now
        self.samples: Rolling[str] = Rolling(telemetry.samples_received)
        self.rejected: Rolling[LabelPairs] = Rolling(telemetry.rejected_pushes)
        self.skipped: Rolling[tuple[str, str]] = Rolling(telemetry.skipped_samples)
        self.minute = int(now // 60)
        self.seen: dict[str, float] = {}  # source -> the last receipt time looked at
        self.intervals: dict[str, deque[float]] = {}

    def tick(self, now: float, telemetry: Telemetry) -> None:
        """Every TICK_SECONDS: note new pushes; at a new minute, read the counters."""
        self.note_pushes(telemetry)
        minute = int(now // 60)
        if minute != self.minute:
            self.minute = minute
            self.samples.advance(minute, telemetry.samples_received)
            self.rejected.advance(minute, telemetry.rejected_pushes)
            self.skipped.advance(minute, telemetry.skipped_samples)

    def note_pushes(self, telemetry: Telemetry) -> None:
        """The interval to each source's newest push, if it is one not seen yet. (Pushes
        committed out of their arrival order can move last_push back: not an interval.)"""
        seen = self.seen
        for source, pushed in telemetry.last_push.items():
            before = seen.get(source)
            if before is None or pushed > before:
                seen[source] = pushed
                if before is not None:
                    kept = self.intervals.get(source)
                    if kept is None:
                        kept = self.intervals[source] = deque(maxlen=INTERVALS_KEPT)
                    kept.append(pushed - before)

    def median_interval(self, source: str) -> float | None:
        kept = self.intervals.get(source)
        return statistics.median(kept) if kept else None

    def stale_after(self, source: str, fixed: int | None) -> float:
        """Seconds without a push after which a source is stale: METRICS_STALE_AFTER when
        set, else twice its median push interval, at least MIN_STALE_SECONDS."""
        if fixed is not None:
            return float(fixed)
        median = self.median_interval(source)
        return MIN_STALE_SECONDS if median is None else max(2 * median, MIN_STALE_SECONDS)

    def covers(self, now: float) -> float:
        """The seconds the hour's figures span: less while the process is younger."""
        return min(now - self.started, WINDOW_MINUTES * 60.0)

    def hour(self, now: float, telemetry: Telemetry) -> HourFigures:
        minute = int(now // 60)
        return HourFigures(self.samples.totals(minute, telemetry.samples_received),
                           self.rejected.totals(minute, telemetry.rejected_pushes),
                           self.skipped.totals(minute, telemetry.skipped_samples),
                           self.covers(now))


class HourFigures:
    """The last hour's counts (`covers`: the seconds they span, less than an hour while the
    process is younger than that)."""

    __slots__ = ("covers", "rejected", "samples", "skipped")

    def __init__(self, samples: dict[str, int], rejected: dict[LabelPairs, int],
                 skipped: dict[tuple[str, str], int], covers: float) -> None:
        self.samples = samples
        self.rejected = rejected
        self.skipped = skipped
        self.covers = covers

    def rejected_by_source(self) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """(source -> reason -> pushes, reason -> pushes of no known source)."""
        known: dict[str, dict[str, int]] = {}
        unknown: dict[str, int] = {}
        for pairs, count in self.rejected.items():
            labels = dict(pairs)
            reason = labels.get("reason", "")
            source = labels.get("source")
            into = unknown if source is None else known.setdefault(source, {})
            into[reason] = into.get(reason, 0) + count
        return known, unknown

    def skipped_by_source(self) -> dict[str, dict[str, int]]:
        """source -> reason -> samples skipped."""
        by_source: dict[str, dict[str, int]] = {}
        for (reason, source), count in self.skipped.items():
            into = by_source.setdefault(source, {})
            into[reason] = into.get(reason, 0) + count
        return by_source

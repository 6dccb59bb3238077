"""The stored-series part of /metrics, kept up to date from the writer's change records
instead of re-read at every scrape.

A scrape after a push used to read and render every fresh series again (19 ms for 10,000
series, 206 ms for 100,000; bench/README.md). Now each metric family keeps its rendered text;
a scrape re-reads only the series the writer touched since the previous one, and renders again
only the families they (or a series ageing out of the export window) belong to.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from metrics_ingest.formats.exposition import Format, render_stored
from metrics_ingest.model import Change
from metrics_ingest.store import ReadSession, StoredSeries

MAX_TOUCHED = 100_000  # beyond this many changed series, a scrape reloads everything instead

SeriesKey = tuple[str, str]  # (source, labels) within a family
Member = tuple[float, int, int]  # (value, timestamp, pinned)
# (metric_name, source, labels, value, timestamp, pinned[, hidden]) as storage reads them
StoredRow = tuple[str, str, str, float, int, int] | tuple[str, str, str, float, int, int, int]


@dataclass(eq=False)
class Family:
    members: dict[SeriesKey, Member] = field(default_factory=dict)
    texts: dict[Format, str] = field(default_factory=dict)  # rendered, per format
    oldest: float = math.inf  # the oldest unpinned member's timestamp: when one ages out

    def changed(self) -> None:
        self.texts.clear()
        self.oldest = min((ts for _, ts, pinned in self.members.values() if not pinned),
                          default=math.inf)

    def drop_older_than(self, since: int) -> None:
        self.members = {key: member for key, member in self.members.items()
                        if member[2] or member[1] >= since}
        self.changed()


@dataclass(eq=False)
class ExportedSeries:
    """Fresh stored series by family, each family's rendered text, and the whole text of the
    last scrape per format (reused while the writer has committed nothing and nothing aged
    out).

    Rows come from `reset` (every fresh series) or `update` (the touched ones, fresh or not,
    with `hidden`). A series is exported while it is pinned (a push-group member) or its
    timestamp is within the export window; hidden ones never are.
    """

    families: dict[str, Family] = field(default_factory=dict)
    label_blocks: dict[tuple[str, str], str] = field(default_factory=dict)
    bodies: dict[Format, tuple[int, float, str]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _names: list[str] | None = None  # family names in order; None after one came or went

    def get(self, fmt: Format, generation: int, now: float) -> str | None:
        """The last text for `fmt` if nothing was committed since and nothing has expired."""
        body = self.bodies.get(fmt)
        if body is None or body[0] != generation or now >= body[1]:
            return None
        return body[2]

    def put(self, fmt: Format, generation: int, expires: float, text: str) -> None:
        self.bodies[fmt] = (generation, expires, text)

    def reset(self, rows: Iterable[StoredRow]) -> None:
        self.families = {}
        self._names = None
        self.label_blocks.clear()  # label sets that no longer export go with it
        self.update(rows)

    def update(self, rows: Iterable[StoredRow]) -> None:
        changed: set[str] = set()
        for row in rows:
            name, source, labels, value, timestamp, pinned = row[:6]
            hidden = len(row) > 6 and row[6]
            family = self.families.get(name)
            if hidden:
                if family is not None and (source, labels) in family.members:
                    del family.members[(source, labels)]
                    changed.add(name)
                continue
            if family is None:
                family = self.families[name] = Family()
                self._names = None
            family.members[(source, labels)] = (value, timestamp, pinned)
            changed.add(name)
        for name in changed:
            self.families[name].changed()

    def render(self, fmt: Format, since: int, with_timestamps: bool) -> tuple[str, float]:
        """The text of every exported series, and the oldest unpinned timestamp in it.

        Series older than `since` (and not pinned) leave their family here, so a later push of
        the same series brings it back through `update`.
        """
        if self._names is None:
            self._names = sorted(self.families)
        parts: list[str] = []
        oldest = math.inf
        emptied = False
        exported = 0
        for name in self._names:
            family = self.families[name]
            if family.oldest < since:
                family.drop_older_than(since)
            if not family.members:
                emptied = True
                continue
            exported += len(family.members)
            text = family.texts.get(fmt)
            if text is None:
                rows = [(name, source, labels, *member)
                        for (source, labels), member in sorted(family.members.items())]
                lines = render_stored(cast(list[StoredSeries], rows), with_timestamps,
                                      self.label_blocks, fmt)
                text = family.texts[fmt] = "\n".join(lines) + "\n"
            parts.append(text)
            oldest = min(oldest, family.oldest)
        if len(self.label_blocks) > 2 * exported + 1000:
            self.label_blocks.clear()  # label sets that no longer export
        if emptied:
            self.families = {name: family for name, family in self.families.items()
                             if family.members}
            self._names = None
        return "".join(parts), oldest


class ExportCache:
    """The stored part of /metrics. Fed only by change records (`apply`, subscribed to the
    writer); a scrape (`text`) first lets the writer look for other processes' commits
    (`sync`), then re-reads only what changed since the previous scrape."""

    def __init__(self, reader: ReadSession, sync: Callable[[], Awaitable[None]],
                 window: int, with_timestamps: bool) -> None:
        self.reader = reader
        self.sync = sync
        self.window = window
        self.with_timestamps = with_timestamps
        self.series = ExportedSeries()
        self.generation = 0  # counts changes applied: a cached body is valid for one
        self.touched: set[int] = set()
        self.everything = True

    def apply(self, change: Change) -> None:
        """Take one change record (on the event loop, in commit order)."""
        self.generation += 1
        if change.everything or len(self.touched) + len(change.series) > MAX_TOUCHED:
            self.everything = True
            self.touched = set()
        elif not self.everything:
            self.touched.update(change.series)

    async def text(self, fmt: Format, now: float) -> str:
        """Every exported stored series as exposition text, current as of this call."""
        await self.sync()
        series = self.series
        generation = self.generation  # read first: a change during the reads forces a redo
        cached = series.get(fmt, generation, now)
        if cached is not None:
            return cached
        since = int(now) - self.window
        async with series.lock:  # one scrape applies rows at a time, in the order read
            touched, everything = self.touched, self.everything
            self.touched, self.everything = set(), False
            try:
                if everything:
                    series.reset(await self.reader.exported_series(since))
                elif touched:
                    series.update(await self.reader.series_by_id(touched))
            except BaseException:
                self.everything = True  # what was taken was not applied: read it all
                raise
            text, oldest = series.render(fmt, since, self.with_timestamps)
        # A series with timestamp t is exported while int(now) - window <= t.
        series.put(fmt, generation, oldest + self.window + 1, text)
        return text

"""The stored part of /metrics, kept up to date from the writer's change records instead of
re-read at every scrape.

A scrape after a push used to read and render every fresh series again (19 ms for 10,000
series, 206 ms for 100,000; bench/README.md). Now each metric family keeps its rendered text;
a scrape re-reads only the series changed since the previous one, and renders again only the
families they (or a series ageing out of the export window) belong to.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from metrics_ingest.families import family_of
from metrics_ingest.formats.exposition import Format
from metrics_ingest.formats.stored import Row, render_family, render_group_times
from metrics_ingest.model import Change, FamilyMeta
from metrics_ingest.store import GroupTimes, ReadSession, SeriesUpdate, StoredSeries

MAX_TOUCHED = 100_000  # beyond this many changed series, a scrape reloads everything instead

SeriesKey = tuple[str, str, str]  # (metric_name, source, labels) within a family
Member = tuple[float, int, int]  # (value, timestamp, pinned)


@dataclass(eq=False)
class Family:
    members: dict[SeriesKey, Member] = field(default_factory=dict)
    texts: dict[Format, str] = field(default_factory=dict)  # rendered, per format
    oldest: float = math.inf  # the oldest unpinned member's timestamp: when one ages out
    bare: bool = False  # a member's name lacks `_total` (OpenMetrics cannot call it a counter)

    def changed(self) -> None:
        self.texts.clear()
        self.oldest = min((ts for _, ts, pinned in self.members.values() if not pinned),
                          default=math.inf)
        self.bare = not all(key[0].endswith("_total") for key in self.members)

    def drop_older_than(self, since: int) -> None:
        self.members = {key: member for key, member in self.members.items()
                        if member[2] or member[1] >= since}
        self.changed()


@dataclass(eq=False)
class ExportedSeries:
    """Exported stored series by family, each family's rendered text, and the whole text of
    the last scrape per format (reused while nothing changed and nothing aged out).

    Rows come from `reset` (every exported series) or `update` (the changed ones, fresh or
    not, with `hidden`). A series is exported while it is pinned (a push-group member) or its
    timestamp is within the export window; hidden ones never are.
    """

    families: dict[str, Family] = field(default_factory=dict)
    declared: dict[str, FamilyMeta] = field(default_factory=dict)
    groups: list[GroupTimes] = field(default_factory=list)
    label_blocks: dict[tuple[str, str], str] = field(default_factory=dict)
    bodies: dict[Format, tuple[int, float, str]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _names: list[str] | None = None  # family names in order; None after one came or went

    def get(self, fmt: Format, generation: int, now: float) -> str | None:
        """The last text for `fmt` if nothing changed since and nothing has expired."""
        body = self.bodies.get(fmt)
        if body is None or body[0] != generation or now >= body[1]:
            return None
        return body[2]

    def put(self, fmt: Format, generation: int, expires: float, text: str) -> None:
        self.bodies[fmt] = (generation, expires, text)

    def reset(self, rows: Iterable[StoredSeries], declared: dict[str, FamilyMeta],
              groups: list[GroupTimes]) -> None:
        self.families = {}
        self.declared = declared
        self.groups = groups
        self._names = None
        self.label_blocks.clear()  # label sets that no longer export go with it
        self.update(rows)

    def update(self, rows: Iterable[StoredSeries | SeriesUpdate]) -> None:
        changed: set[str] = set()
        declared = self.declared
        family_names: dict[str, str] = {}  # metric name -> family: names repeat across series
        for row in rows:
            name, source, labels, value, timestamp, pinned = row[:6]
            hidden = len(row) > 6 and row[6]
            key = family_names.get(name)
            if key is None:
                key = family_names[name] = family_of(name, declared) if declared else name
            family = self.families.get(key)
            if hidden:
                if family is not None and (name, source, labels) in family.members:
                    del family.members[(name, source, labels)]
                    changed.add(key)
                continue
            if family is None:
                family = self.families[key] = Family()
                self._names = None
            family.members[(name, source, labels)] = (value, timestamp, pinned)
            changed.add(key)
        for key in changed:
            self.families[key].changed()

    def loses_counters_in_openmetrics(self) -> bool:
        """True when a counter's samples lack the `_total` OpenMetrics requires: there it
        would be `unknown`, while text 0.0.4 keeps it a counter, as the Pushgateway does."""
        families = self.families
        return any(meta.type == "counter" and name in families and families[name].bare
                   for name, meta in self.declared.items())

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
                rows: list[Row] = [(*key, *member)
                                   for key, member in sorted(family.members.items())]
                lines = render_family(name, self.declared.get(name), rows, with_timestamps,
                                      self.label_blocks, fmt)
                text = family.texts[fmt] = "\n".join(lines) + "\n" if lines else ""
            parts.append(text)
            oldest = min(oldest, family.oldest)
        group_lines = render_group_times(self.groups, fmt)
        if group_lines:
            parts.append("\n".join(group_lines) + "\n")
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
        self.groups_changed = False

    def apply(self, change: Change) -> None:
        """Take one change record (on the event loop, in commit order). New family types
        can move series between families, so they make the next scrape read everything."""
        self.generation += 1
        if change.groups:
            self.groups_changed = True
        if (change.everything or change.families
                or len(self.touched) + len(change.series) > MAX_TOUCHED):
            self.everything = True
            self.touched = set()
        elif not self.everything:
            self.touched.update(change.series)

    async def text(self, fmt: Format, now: float,
                   fallback: Format | None = None) -> tuple[str, Format]:
        """Every exported stored series as exposition text, current as of this call, and
        the format it is in: `fmt`, or `fallback` (text 0.0.4, when the scraper takes it)
        instead of OpenMetrics when that would turn a pushed counter into `unknown`."""
        await self.sync()
        series = self.series
        generation = self.generation  # read first: a change during the reads forces a redo
        if fallback is not None and fmt.openmetrics and series.loses_counters_in_openmetrics():
            fmt = fallback  # (checked again below, after applying what changed)
        cached = series.get(fmt, generation, now)
        if cached is not None:
            return cached, fmt
        since = int(now) - self.window
        reader = self.reader
        async with series.lock:  # one scrape applies rows at a time, in the order read
            touched, everything, groups_changed = (
                self.touched, self.everything, self.groups_changed)
            self.touched, self.everything, self.groups_changed = set(), False, False
            try:
                if everything:
                    series.reset(await reader.exported_series(since), await reader.families(),
                                 await reader.groups())
                else:
                    if touched:
                        series.update(await reader.series_by_id(touched))
                    if groups_changed:
                        series.groups = await reader.groups()
            except BaseException:
                self.everything = True  # what was taken was not applied: read it all
                raise
            if (fallback is not None and fmt.openmetrics
                    and series.loses_counters_in_openmetrics()):
                fmt = fallback
            text, oldest = series.render(fmt, since, self.with_timestamps)
        # A series with timestamp t is exported while int(now) - window <= t.
        series.put(fmt, generation, oldest + self.window + 1, text)
        return text, fmt

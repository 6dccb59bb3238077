"""The stored part of /metrics, kept as rendered text by range of series ids and brought up
to date from the writer's change records, off the event loop.

Series ids are cut into ranges of 1,024. Each range keeps, per key (formats/stored.py), the
rendered lines of its series as bytes, and nothing else per series: a million series cost
their text (~60 bytes each) and no Python objects. A change record marks ranges dirty; a
scrape re-reads and re-renders only those (and ranges where a series aged out of the export
window) on a thread with its own read connection, then hands out the pieces to write:
references to the cached bytes, never a joined copy. Histograms and summaries render whole,
sorted, as their structure needs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from metrics_ingest.formats.exposition import TEXT, Format
from metrics_ingest.formats.stored import (
    is_structured,
    key_header,
    render_group_times,
    render_lines,
    render_structured,
)
from metrics_ingest.model import Change, FamilyMeta
from metrics_ingest.store import ExportReader, ExportRow, GroupTimes, StorageError

log = logging.getLogger("metrics_ingest.export")

RANGE_BITS = 10
MAX_DIRTY = 100_000  # beyond this many dirty ranges, a scrape reads everything
# Changes are rendered in the background at most this often (a scrape renders what is left):
# a scrape after a million new series then waits for the last second of them, not all.
BACKGROUND_SECONDS = 1.0


@dataclass(eq=False)
class Part:
    """One key's series within one range (or one whole structured family), rendered."""

    text: bytes
    oldest: float  # the oldest unpinned timestamp in it: when it must be rendered again
    sources: frozenset[str]


@dataclass(eq=False)
class Rendered:
    """Everything rendered for one format."""

    ranges: dict[int, dict[str, Part]] = field(default_factory=dict)
    keys: dict[str, set[int]] = field(default_factory=dict)  # key -> ranges holding it
    whole: dict[str, Part] = field(default_factory=dict)  # structured family -> part
    whole_ranges: dict[str, set[int]] = field(default_factory=dict)

    def drop_range(self, number: int) -> None:
        for key in self.ranges.pop(number, {}):
            holders = self.keys[key]
            holders.discard(number)
            if not holders:
                del self.keys[key]


class ExportCache:
    """The stored part of /metrics. Fed only by change records (`apply`, subscribed to the
    writer); a scrape (`pieces`) first lets the writer look for other processes' commits
    (`sync`), then renders what changed since the previous scrape."""

    def __init__(self, reader: ExportReader, sync: Callable[[], Awaitable[None]],
                 window: int, with_timestamps: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.sync = sync
        self.clock = clock
        self.window = window
        self.with_timestamps = with_timestamps
        self.declared: dict[str, FamilyMeta] = {}
        self.groups: list[GroupTimes] = []
        self.rendered: dict[Format, Rendered] = {}
        self.dirty: set[int] = set()  # ranges changed since the last scrape
        self.everything = True
        self.groups_changed = True
        self.lock = asyncio.Lock()
        self.changed = asyncio.Event()  # set by apply: the background renderer has work

    def apply(self, change: Change) -> None:
        """Take one change record (on the event loop, in commit order). New family types
        can move series between keys, so they make the next scrape read everything."""
        self.changed.set()
        if change.groups:
            self.groups_changed = True
        if change.everything or change.families or len(self.dirty) > MAX_DIRTY:
            self.everything = True
            self.dirty = set()
        elif not self.everything:
            self.dirty.update({series_id >> RANGE_BITS for series_id in change.series})

    async def pieces(self, fmt: Format, now: float,
                     fallback: Format | None = None) -> tuple[list[bytes], Format]:
        """The exported stored series as exposition text, current as of this call, in
        pieces to write in order; and the format: `fmt`, or `fallback` (text 0.0.4, when the
        scraper takes it) instead of OpenMetrics when that would turn a pushed counter into
        `unknown`."""
        await self.sync()
        since = int(now) - self.window
        async with self.lock:  # one render at a time, in the order changes came
            await self._catch_up(since)
            await self._bring_up_to_date(fmt, since)
            if fallback is not None and fmt.openmetrics and self._loses_counters():
                fmt = fallback
                await self._bring_up_to_date(fmt, since)
            return self._assemble(fmt), fmt

    async def render_in_background(self) -> None:
        """Until cancelled: render changes as they come, at most every BACKGROUND_SECONDS,
        in the formats scraped so far (text 0.0.4 before the first scrape). While the
        database cannot be read, the changes stay pending (see `_catch_up`) and are tried
        again every BACKGROUND_SECONDS: one warning when that starts, one line when it ends.
        Any other error ends it (app.py reports that)."""
        failing = False
        while True:
            await self.changed.wait()
            await asyncio.sleep(BACKGROUND_SECONDS)  # gather a second of changes
            self.changed.clear()
            try:
                await self._render_pending()
            except StorageError as exc:
                if not failing:
                    log.warning("/metrics renderer: %s (trying again every %.0f s)", exc,
                                BACKGROUND_SECONDS)
                failing = True
                self.changed.set()  # what is pending is still to render
                continue
            if failing:
                log.info("/metrics renderer: the database can be read again")
            failing = False

    async def _render_pending(self) -> None:
        since = int(self.clock()) - self.window
        async with self.lock:
            await self._catch_up(since)
            if not self.rendered:
                await self._bring_up_to_date(TEXT, since)

    async def _catch_up(self, since: int) -> None:
        """Apply what the change records said to every format rendered so far; the caller
        holds the lock. On failure nothing is lost: the next call reads everything."""
        dirty, everything, groups_changed = self.dirty, self.everything, self.groups_changed
        self.dirty, self.everything, self.groups_changed = set(), False, False
        try:
            await asyncio.to_thread(self._refresh, dirty, everything, groups_changed, since)
        except BaseException:
            self.everything = True  # what was taken was not applied: read it all
            raise

    async def _bring_up_to_date(self, fmt: Format, since: int) -> None:
        """Render `fmt` whole if it never was, else its ranges where a series aged out."""
        try:
            if fmt not in self.rendered:
                self.rendered[fmt] = Rendered()
                await asyncio.to_thread(self._render, fmt, None, since)
            else:
                await asyncio.to_thread(self._render, fmt, self._expired(fmt, since), since)
        except BaseException:
            self.rendered.pop(fmt, None)  # half rendered: start over next time
            raise

    # -- on the render thread ---------------------------------------------------------------

    def _refresh(self, dirty: set[int], everything: bool, groups_changed: bool,
                 since: int) -> None:
        """Apply what the change records said to every format rendered so far."""
        if everything:
            self.declared = self.reader.families()
            self.groups = self.reader.groups()
            for fmt in self.rendered:
                self.rendered[fmt] = Rendered()
                self._render(fmt, None, since)
            return
        if groups_changed:
            self.groups = self.reader.groups()
        if dirty:
            for fmt in self.rendered:
                self._render(fmt, dirty, since)

    def _expired(self, fmt: Format, since: int) -> set[int]:
        rendered = self.rendered[fmt]
        expired = {number for number, parts in rendered.ranges.items()
                   if any(part.oldest < since for part in parts.values())}
        for family, part in rendered.whole.items():
            if part.oldest < since:
                expired |= rendered.whole_ranges.get(family, set())
        return expired

    def _render(self, fmt: Format, ranges: set[int] | None, since: int) -> None:
        """Render again the given ranges (None: every range) and the structured families
        with a member in them."""
        rendered = self.rendered[fmt]
        if ranges is not None and not ranges:
            return
        structured: set[str] = set()
        if ranges is None:
            rendered.ranges.clear()
            rendered.keys.clear()
            rendered.whole_ranges.clear()
            spans = [(0, 2**62)]
        else:
            spans = [(number << RANGE_BITS, ((number + 1) << RANGE_BITS) - 1)
                     for number in sorted(ranges)]
            for number in ranges:
                rendered.drop_range(number)
            structured = {family for family, held in rendered.whole_ranges.items()
                          if held & ranges}
        declared = self.declared
        owners: dict[str, str | None] = {}  # metric name -> structured family (names repeat)
        for first, last in spans:
            current: int | None = None
            rows: dict[str, list[ExportRow]] = {}
            for row in self.reader.rows_between(first, last, since):
                number = row[0] >> RANGE_BITS
                if number != current:
                    if current is not None:
                        self._store_range(rendered, current, rows, fmt)
                    current, rows = number, {}
                name = row[1]
                family = owners.get(name, name) if declared else None
                if family == name:  # not looked up yet (no family is named as its member)
                    family = owners[name] = is_structured(name, declared)
                if family is not None:
                    structured.add(family)
                    rendered.whole_ranges.setdefault(family, set()).add(number)
                else:
                    rows.setdefault(name, []).append(row)
            if current is not None:
                self._store_range(rendered, current, rows, fmt)
        for family in structured:
            self._render_whole(rendered, family, fmt, since)

    def _store_range(self, rendered: Rendered, number: int, rows: dict[str, list[ExportRow]],
                     fmt: Format) -> None:
        parts: dict[str, Part] = {}
        for key, members in rows.items():
            lines = render_lines(members, self.with_timestamps, fmt)  # in id order
            oldest = min((row[6] for row in members if not row[7]), default=math.inf)
            parts[key] = Part(("\n".join(lines) + "\n").encode(), oldest,
                              frozenset(row[2] for row in members))
            rendered.keys.setdefault(key, set()).add(number)
        rendered.ranges[number] = parts

    def _render_whole(self, rendered: Rendered, family: str, fmt: Format, since: int) -> None:
        meta = self.declared[family]
        names = [family, *(family + suffix for suffix in ("_bucket", "_count", "_sum"))]
        rows = self.reader.rows_named(names, since)
        rendered.whole_ranges[family] = {row[0] >> RANGE_BITS for row in rows}
        lines = render_structured(family, meta, rows, self.with_timestamps, fmt)
        if not lines:
            rendered.whole.pop(family, None)
            return
        oldest = min((row[6] for row in rows if not row[7]), default=math.inf)
        rendered.whole[family] = Part(("\n".join(lines) + "\n").encode(), oldest,
                                      frozenset(row[2] for row in rows))

    # -- back on the event loop ------------------------------------------------------------

    def _loses_counters(self) -> bool:
        """True when a counter's samples lack the `_total` OpenMetrics requires: there it
        would be `unknown`, while text 0.0.4 keeps it a counter, as the Pushgateway does."""
        present = next(iter(self.rendered.values())).keys if self.rendered else {}
        return any(meta.type == "counter" and not name.endswith("_total") and name in present
                   for name, meta in self.declared.items())

    def _assemble(self, fmt: Format) -> list[bytes]:
        rendered = self.rendered[fmt]
        pieces: list[bytes] = []
        for key in sorted({*rendered.keys, *rendered.whole}):
            whole = rendered.whole.get(key)
            if whole is not None:
                pieces.append(whole.text)
                continue
            parts = [rendered.ranges[number][key] for number in sorted(rendered.keys[key])]
            header = key_header(key, self.declared,
                                frozenset().union(*(part.sources for part in parts)),
                                rendered.keys, fmt)
            if header is not None:
                pieces.append(("\n".join(header) + "\n").encode())
                pieces += (part.text for part in parts)
        group_lines = render_group_times(self.groups, fmt)
        if group_lines:
            pieces.append(("\n".join(group_lines) + "\n").encode())
        return pieces

"""The writer's series cache: ids of recently written series by (source, labels) and metric
name, a bounded cache of the `series` table, shared by both engines. Each engine supplies
the table (`SeriesTable`): how misses are found and how new series are created."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import Protocol, cast

from metrics_ingest.formats.exposition import series_block
from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store.budgets import SeriesLimits, refuse_over_budget

SeriesKey = tuple[str, str, str]  # (metric_name, source, labels)
NewSeries = tuple[str, str, str, str]  # (metric_name, source, labels, label block)
Generation = dict[tuple[str, str], dict[str, int]]
NO_SERIES: dict[str, int] = {}
# Series kept per generation: two generations bound the cache to ~2x this many (about
# 450 bytes each for job-level series, whose label sets are all different).
GENERATION_SERIES = 65_536
GENERATION_SECONDS = 1800.0  # a generation older than this is dropped even when not full


class SeriesTable(Protocol):
    """An engine's `series` table, inside the writer's open transaction."""

    def find(self, keys: Sequence[SeriesKey]) -> Iterable[tuple[int, str, str, str]]:
        """(id, metric_name, source, labels) of those of `keys` that are stored."""
        ...

    def create(self, rows: Sequence[NewSeries]) -> dict[SeriesKey, int]:
        """Insert series not found by `find`; returns the id of each. With several writers
        on one database, a series another writer created meanwhile gets its id instead of a
        duplicate."""
        ...

    def series_counts(self, sources: Sequence[str]) -> tuple[dict[str, int], int]:
        """The stored series of each of `sources`, and of the whole database."""
        ...


class OverBudgetPushes(Exception):
    """Raised inside `rows`: some pushes were refused, the batch's rows are made again."""


class SeriesCache:
    """Series ids by (source, labels) then metric name; used only on the writer thread.

    Two generations: lookups promote a label set from the old generation to the young one;
    when the young one holds GENERATION_SERIES series or is GENERATION_SECONDS old, it becomes
    the old one and the old one is dropped. So memory stays bounded however many series there
    are, and series no longer written are given back. A batch's misses are looked up in the
    table in one query, and only series found nowhere are created. Ids never change while a
    series exists; when series are deleted (the purge, `db query`), the engine calls `clear`.
    """

    def __init__(self, generation_series: int | None = None) -> None:
        self.young: Generation = {}
        self.old: Generation = {}
        self.young_series = 0
        self.generation_series = generation_series or GENERATION_SERIES
        self.born = time.monotonic()
        self.clears = 0  # how often emptied: a big push's prepared ids hold until the next
        self._pending: dict[SeriesKey, int] = {}

    def __len__(self) -> int:
        return sum(map(len, self.young.values())) + sum(map(len, self.old.values()))

    def clear(self) -> None:
        self.young, self.old, self.young_series = {}, {}, 0
        self._pending = {}
        self.clears += 1

    def peek(self, key: tuple[str, str]) -> dict[str, int]:
        """The cached ids of a (source, labels), by metric name, without promoting them."""
        found = self.young.get(key)
        return found if found is not None else self.old.get(key, NO_SERIES)

    def _cached(self, key: tuple[str, str]) -> dict[str, int]:
        inner = self.young.get(key)
        if inner is None:
            inner = self.old.pop(key, None)
            if inner is None:
                return NO_SERIES
            self.young[key] = inner
            self.young_series += len(inner)
        return inner

    def rows(self, table: SeriesTable, pushes: Sequence[Push],
             limits: SeriesLimits | None = None
             ) -> tuple[list[int | float], list[int | float]]:
        """Sample rows, flat (timestamp, series_id, value, ...), and the newest sample of
        each series in the batch, flat (series_id, timestamp, value, ...), oldest first.

        With `limits`, a push that would create series beyond a budget gets `refused` (an
        OverBudget) and none of its rows; the others' rows are returned.

        Series found or created in the table are not adopted until `adopt` (after the commit),
        so a rolled-back batch leaves the cache as the database is. Columns are gathered group
        by group and zipped once: per-group iterators cost a third of a small batch's commit
        (bench/README.md, "Writer").
        """
        try:
            return self._rows(table, pushes, limits)
        except OverBudgetPushes:
            return self.rows(table, [push for push in pushes if push.refused is None], limits)

    def _rows(self, table: SeriesTable, pushes: Sequence[Push], limits: SeriesLimits | None
              ) -> tuple[list[int | float], list[int | float]]:
        self._pending = {}
        # Oldest first (a stable sort keeps queue order among equal timestamps), so a later
        # group's sample of a series is always the newer one and can simply overwrite.
        groups = sorted((group for push in pushes for group in push.groups),
                        key=attrgetter("timestamp"))
        found: list[int | None] = []
        stamps: list[int] = []
        values: list[float] = []
        cached = self._cached
        prepared = self._prepared(pushes)
        for group in groups:
            ids = prepared.get(id(group)) if prepared else None
            if ids is not None:
                found += ids
            else:
                found += map(cached((group.source, group.labels)).get, group.names)
            stamps += repeat(group.timestamp, len(group.names))
            values += group.values
        ids = (self._resolve(table, groups, found, pushes if limits else None, limits)
               if None in found else cast(list[int], found))
        newest = dict(zip(ids, zip(ids, stamps, values, strict=True), strict=True))
        return (list(chain.from_iterable(zip(stamps, ids, values, strict=True))),
                list(chain.from_iterable(newest.values())))

    def _resolve(self, table: SeriesTable, groups: list[SampleGroup],
                 found: list[int | None], pushes: Sequence[Push] | None,
                 limits: SeriesLimits | None) -> list[int]:
        """Fill in the ids the cache did not have: from the table, else newly created (raises
        OverBudgetPushes when `limits` refused a push: nothing was created)."""
        # In the batch's order: SQLite numbers new series in this order, and a push's series
        # with neighbouring ids keep its inserts near each other in the samples and latest
        # B-trees (sorted by key instead, W3 lost 20%).
        missing = list(dict.fromkeys((name, group.source, group.labels)
                                     for group, names in self._misses(groups, found)
                                     for name in names))
        creators: dict[SeriesKey, Push] = {}

        def creator(key: SeriesKey) -> Push:
            """The first push of the batch with the series (worked out only when series are
            to be created under budgets)."""
            if not creators:
                owners = {id(group): push for push in pushes or () for group in push.groups}
                creators.update(((name, group.source, group.labels), owners[id(group)])
                                for group, names in reversed(self._misses(groups, found))
                                for name in names)
            return creators[key]

        known, _ = find_or_create(table, missing, creator if pushes is not None else None,
                                  limits)
        self._pending = known
        filled = list(found)
        at = 0
        for group in groups:
            for offset, name in enumerate(group.names, at):
                if filled[offset] is None:
                    filled[offset] = known[(name, group.source, group.labels)]
            at += len(group.names)
        return cast(list[int], filled)

    def _prepared(self, pushes: Sequence[Push]) -> dict[int, list[int]]:
        """The ids prepared ahead for the batch's big pushes (store/preparing.py), by group;
        none once the cache was cleared since (the series may be gone)."""
        prepared: dict[int, list[int]] = {}
        for push in pushes:
            ready = push.prepared
            if (ready is not None and ready.clears == self.clears
                    and len(ready.ids) == len(push.groups)):
                prepared.update(zip(map(id, push.groups), ready.ids, strict=True))
        return prepared

    @staticmethod
    def _misses(groups: list[SampleGroup], found: list[int | None]
                ) -> list[tuple[SampleGroup, list[str]]]:
        misses = []
        at = 0
        for group in groups:
            names = [name for name, got in zip(group.names, found[at:at + len(group.names)],
                                               strict=True) if got is None]
            if names:
                misses.append((group, names))
            at += len(group.names)
        return misses

    def markers(self, table: SeriesTable, pushes: Sequence[Push]) -> list[tuple[int, int]]:
        """(series_id, timestamp) of the pushes' staleness markers whose series are stored
        (or created by this batch: call after `rows`); a marker of an unknown series is
        dropped, as it ends nothing. Creates no series and caches nothing."""
        wanted = [(name, group.source, group.labels, group.timestamp)
                  for push in pushes if push.stale for group in push.stale
                  for name in group.names]
        if not wanted:
            return []
        ids: dict[SeriesKey, int | None] = {}
        for name, source, labels, _ in wanted:
            key = (name, source, labels)
            if key not in ids:
                ids[key] = (self.peek((source, labels)).get(name)
                            or self._pending.get(key))
        missing = [key for key, found in ids.items() if found is None]
        if missing:
            ids.update({(name, source, labels): series_id
                        for series_id, name, source, labels in table.find(missing)})
        return [(series_id, timestamp) for name, source, labels, timestamp in wanted
                if (series_id := ids.get((name, source, labels))) is not None]

    def _remember(self, source: str, labels: str, name: str, series_id: int) -> None:
        key = (source, labels)
        inner = self._cached(key)
        if inner is NO_SERIES:
            inner = self.young[key] = {}
        inner[sys.intern(name)] = series_id
        self.young_series += 1

    def id_of(self, source: str, labels: str, name: str) -> int:
        """The id of a series of the batch being written (cached, or resolved for it)."""
        found = self.young.get((source, labels), NO_SERIES).get(name)
        return found if found is not None else self._pending[(name, source, labels)]

    def adopt(self) -> None:
        """After the commit: the batch's resolved series join the cache; a full or old
        young generation becomes the old one."""
        for (name, source, labels), series_id in self._pending.items():
            self._remember(source, labels, name, series_id)
        self._pending = {}
        if (self.young_series > self.generation_series
                or time.monotonic() - self.born > GENERATION_SECONDS):
            self.old, self.young, self.young_series = self.young, {}, 0
            self.born = time.monotonic()

    def resolved(self) -> bool:
        """True when the batch being written looked series up in the table or created some
        (`rows` found ids the cache did not have)."""
        return bool(self._pending)

    def forget_pending(self) -> None:
        """After a rollback: what the batch resolved may not exist."""
        self._pending = {}


def find_or_create(table: SeriesTable, missing: Sequence[SeriesKey],
                   creator: Callable[[SeriesKey], Push] | None, limits: SeriesLimits | None
                   ) -> tuple[dict[SeriesKey, int], dict[SeriesKey, int]]:
    """The ids of `missing` (distinct keys), found in the table or created in their order;
    and those created. With `creator` (the push creating each key) and `limits`, pushes
    that would exceed a budget get `refused` and OverBudgetPushes is raised before anything
    is created."""
    known = {(name, source, labels): series_id
             for series_id, name, source, labels in table.find(missing)}
    blocks: dict[tuple[str, str], str] = {}
    new: list[NewSeries] = []
    for name, source, labels in missing:
        if (name, source, labels) not in known:
            block = blocks.get((source, labels))
            if block is None:
                block = blocks[(source, labels)] = series_block(source, labels)
            new.append((name, source, labels, block))
    if (new and creator is not None and limits is not None
            and refuse_over_budget(limits, [(creator(row[:3]), row[1]) for row in new], table)):
        raise OverBudgetPushes()
    created = table.create(new) if new else {}
    known.update(created)
    return known, created

"""The SQLite writer's series index: ids of recently written series by (source, labels) and
metric name, a bounded cache of the `series` table; ids are allocated here."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import cast

import orjson

from metrics_ingest.formats.exposition import series_block
from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store.sqlite.sql import (
    SELECT_DATA_VERSION,
    SELECT_MAX_SERIES_ID,
    SELECT_SERIES_BY_KEYS,
)

NewSeries = tuple[int, str, str, str, str]  # (id, metric_name, source, labels, label block)
Generation = dict[tuple[str, str], dict[str, int]]
NO_SERIES: dict[str, int] = {}
# Series kept per generation: two generations bound the index to ~2x this many (about
# 450 bytes each for job-level series, whose label sets are all different).
GENERATION_SERIES = 65_536
GENERATION_SECONDS = 1800.0  # a generation older than this is dropped even when not full


class SeriesIndex:
    """Series ids by (source, labels) then metric name; used only on the writer thread.

    A cache of the `series` table in two generations: lookups promote a label set from the
    old generation to the young one; when the young one holds GENERATION_SERIES series or is
    GENERATION_SECONDS old, it becomes the old one and the old one is dropped. So memory stays
    bounded however many series there are, and series no longer written are given back. A
    miss is looked up in the table (one query per batch), and only a series found nowhere is
    allocated a new id: safe, because this is the only writer. If another connection commits
    (`metrics-ingest purge` beside the server), PRAGMA data_version changes and the cache is
    emptied before it is used again.
    """

    def __init__(self, generation_series: int | None = None) -> None:
        self.young: Generation = {}
        self.old: Generation = {}
        self.young_series = 0
        self.generation_series = generation_series or GENERATION_SERIES
        self.born = time.monotonic()
        self.next_id = 1
        self.data_version = -1
        self._pending: Generation = {}

    def __len__(self) -> int:
        return sum(map(len, self.young.values())) + sum(map(len, self.old.values()))

    def refresh(self, db: sqlite3.Connection) -> bool:
        """Empty the cache if another connection has committed since; True if it did."""
        version = int(db.execute(SELECT_DATA_VERSION).fetchone()[0])
        if version == self.data_version:
            return False
        self.reload(db)
        self.data_version = version
        return True

    def reload(self, db: sqlite3.Connection) -> None:
        self.young, self.old, self.young_series = {}, {}, 0
        self.next_id = int(db.execute(SELECT_MAX_SERIES_ID).fetchone()[0] or 0) + 1

    def _cached(self, key: tuple[str, str]) -> dict[str, int]:
        inner = self.young.get(key)
        if inner is None:
            inner = self.old.pop(key, None)
            if inner is None:
                return NO_SERIES
            self.young[key] = inner
            self.young_series += len(inner)
        return inner

    def rows(self, db: sqlite3.Connection, pushes: Sequence[Push]
             ) -> tuple[list[NewSeries], list[int | float], list[int | float]]:
        """Series to create, then sample rows and the newest sample of each series in the
        batch, both flattened for `insert_rows`.

        New series are not adopted until `adopt` (after the commit), so a rolled-back batch
        leaves the index as the database is. Columns are gathered group by group and zipped
        once: per-group iterators cost a third of a small batch's commit (bench/README.md).
        """
        new_series: list[NewSeries] = []
        self._pending = {}
        # Oldest first (a stable sort keeps queue order among equal timestamps), so a later
        # group's sample of a series is always the newer one and can simply overwrite.
        groups = sorted((group for push in pushes for group in push.groups),
                        key=attrgetter("timestamp"))
        found: list[int | None] = []
        stamps: list[int] = []
        values: list[float] = []
        cached = self._cached
        for group in groups:
            found += map(cached((group.source, group.labels)).get, group.names)
            stamps += repeat(group.timestamp, len(group.names))
            values += group.values
        ids = (self._resolve(db, groups, found, new_series) if None in found
               else cast(list[int], found))
        newest = dict(zip(ids, zip(ids, stamps, values, strict=True), strict=True))
        return (new_series, list(chain.from_iterable(zip(stamps, ids, values, strict=True))),
                list(chain.from_iterable(newest.values())))

    def _resolve(self, db: sqlite3.Connection, groups: list[SampleGroup],
                 found: list[int | None], new_series: list[NewSeries]) -> list[int]:
        """Fill in the ids the cache did not have: from the table, else newly allocated."""
        missing = {(name, group.source, group.labels)
                   for group, names in self._misses(groups, found) for name in names}
        stored = {(name, source, labels): series_id for series_id, name, source, labels in
                  db.execute(SELECT_SERIES_BY_KEYS, (orjson.dumps(list(missing)),))}
        for (name, source, labels), series_id in stored.items():
            self._remember(source, labels, name, series_id)
        filled = list(found)
        blocks: dict[tuple[str, str], str] = {}
        at = 0
        for group in groups:
            key = (group.source, group.labels)
            inner = self.young.get(key, NO_SERIES)
            pending = self._pending.setdefault(key, {})
            for offset, name in enumerate(group.names, at):
                if filled[offset] is None:
                    series_id = inner.get(name) or pending.get(name)
                    if series_id is None:
                        series_id = pending[name] = self.next_id + len(new_series)
                        block = blocks.get(key)
                        if block is None:
                            block = blocks[key] = series_block(*key)
                        new_series.append((series_id, name, group.source, group.labels, block))
                    filled[offset] = series_id
            at += len(group.names)
        return cast(list[int], filled)

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

    def _remember(self, source: str, labels: str, name: str, series_id: int) -> None:
        key = (source, labels)
        inner = self._cached(key)
        if inner is NO_SERIES:
            inner = self.young[key] = {}
        inner[sys.intern(name)] = series_id
        self.young_series += 1

    def id_of(self, source: str, labels: str, name: str) -> int:
        """The id of a series of the batch being written (known, or new in this batch)."""
        key = (source, labels)
        found = self.young.get(key, NO_SERIES).get(name)
        return found if found is not None else self._pending[key][name]

    def adopt(self, new_series: list[NewSeries]) -> None:
        """After the commit: the batch's new series join the cache; a full or old young
        generation becomes the old one."""
        for series_id, name, source, labels, _ in new_series:
            self._remember(source, labels, name, series_id)
        self.next_id += len(new_series)
        self._pending = {}
        if (self.young_series > self.generation_series
                or time.monotonic() - self.born > GENERATION_SECONDS):
            self.old, self.young, self.young_series = self.young, {}, 0
            self.born = time.monotonic()

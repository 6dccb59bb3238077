"""The SQLite writer's series index: ids by (source, labels) and metric name, allocated here."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import cast

from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store.sqlite.sql import SELECT_ALL_SERIES, SELECT_DATA_VERSION

NewSeries = tuple[int, str, str, str]  # (id, metric_name, source, labels)
NO_SERIES: dict[str, int] = {}


class SeriesIndex:
    """Series ids by (source, labels) then metric name; used only on the writer thread.

    Ids are allocated here, which is safe because this is the only writer. If another
    connection commits (`metrics-ingest purge` beside the server), PRAGMA data_version changes
    and the map is reloaded before it is used again.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], dict[str, int]] = {}
        self.next_id = 1
        self.data_version = -1
        self._pending: dict[tuple[str, str], dict[str, int]] = {}

    def refresh(self, db: sqlite3.Connection) -> bool:
        """Reload the map if another connection has committed since; True if it did."""
        version = int(db.execute(SELECT_DATA_VERSION).fetchone()[0])
        if version == self.data_version:
            return False
        self.reload(db)
        self.data_version = version
        return True

    def reload(self, db: sqlite3.Connection) -> None:
        ids: dict[tuple[str, str], dict[str, int]] = {}
        highest = 0
        for series_id, name, source, labels in db.execute(SELECT_ALL_SERIES):
            ids.setdefault((source, labels), {})[name] = series_id
            highest = max(highest, series_id)
        self.ids = ids
        self.next_id = highest + 1

    def rows(self, pushes: Sequence[Push]) -> tuple[list[NewSeries], list[int | float],
                                                 list[int | float]]:
        """Series to create, then sample rows and the newest sample of each series in the
        batch, both flattened for `insert_rows`.

        New series are not adopted until `adopt` (after the commit), so a rolled-back batch
        leaves the map as the database is. Columns are gathered group by group and zipped
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
        known = self.ids
        for group in groups:
            found += map(known.get((group.source, group.labels), NO_SERIES).get, group.names)
            stamps += repeat(group.timestamp, len(group.names))
            values += group.values
        ids = (self._with_new_ids(groups, found, new_series) if None in found
               else cast(list[int], found))
        newest = dict(zip(ids, zip(ids, stamps, values, strict=True), strict=True))
        return (new_series, list(chain.from_iterable(zip(stamps, ids, values, strict=True))),
                list(chain.from_iterable(newest.values())))

    def _with_new_ids(self, groups: list[SampleGroup], found: list[int | None],
                      new_series: list[NewSeries]) -> list[int]:
        """Fill in the ids of series not yet in the map, allocating the unseen ones."""
        filled = list(found)
        at = 0
        for group in groups:
            pending = self._pending.setdefault((group.source, group.labels), {})
            for offset, name in enumerate(group.names, at):
                if filled[offset] is None:
                    series_id = pending.get(name)
                    if series_id is None:
                        series_id = pending[name] = self.next_id + len(new_series)
                        new_series.append((series_id, name, group.source, group.labels))
                    filled[offset] = series_id
            at += len(group.names)
        return cast(list[int], filled)

    def id_of(self, source: str, labels: str, name: str) -> int:
        """The id of a series of the batch being written (known, or new in this batch)."""
        key = (source, labels)
        found = self.ids.get(key, NO_SERIES).get(name)
        return found if found is not None else self._pending[key][name]

    def adopt(self, new_series: list[NewSeries]) -> None:
        for series_id, name, source, labels in new_series:
            self.ids.setdefault((source, labels), {})[name] = series_id
        self.next_id += len(new_series)
        self._pending = {}

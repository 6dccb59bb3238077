"""The SQLite status reader: the query reader's read-only connection with the few reads the
status page adds (sources, groups, one source's series)."""

from __future__ import annotations

import sqlite3

from metrics_ingest.store import GroupTimes, SourceSeries, StorageError
from metrics_ingest.store.sqlite.query import SQLiteQueryReader
from metrics_ingest.store.sqlite.sql import SELECT_ALL_SOURCE_SERIES, SELECT_GROUPS

SELECT_SOURCE_TIMES = "SELECT source, newest FROM sources"
SELECT_SOURCE_LATEST = (
    "SELECT s.id, s.metric_name, s.labels, l.value, l.timestamp"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.source = ? AND l.hidden = 0 ORDER BY s.metric_name, s.labels LIMIT ?"
)


class SQLiteStatusReader(SQLiteQueryReader):
    """The store's StatusReader (see store.StatusReader)."""

    def source_times(self) -> dict[str, int]:
        try:
            return dict(self.db.execute(SELECT_SOURCE_TIMES).fetchall())
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def series_counts(self) -> dict[str, int]:
        try:
            return dict(self.db.execute(SELECT_ALL_SOURCE_SERIES).fetchall())
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def groups(self) -> list[GroupTimes]:
        try:
            return [GroupTimes(*row) for row in self.db.execute(SELECT_GROUPS).fetchall()]
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def source_series(self, source: str, limit: int) -> list[SourceSeries]:
        try:
            rows = self.db.execute(SELECT_SOURCE_LATEST, (source, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return [SourceSeries(*row) for row in rows]

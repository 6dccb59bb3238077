"""The SQLite `series` table as the series cache sees it (store/series_cache.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import orjson

from metrics_ingest.store.series_cache import NewSeries, SeriesKey
from metrics_ingest.store.sqlite.sql import (
    INSERT_SERIES,
    SELECT_MAX_SERIES_ID,
    SELECT_SERIES_BY_KEYS,
    SELECT_SOURCE_SERIES,
    SELECT_TOTAL_SERIES,
)


class SQLiteSeriesTable:
    """Misses in one query (`json_each` over the keys, an index lookup each); new ids are
    the next after the largest, read inside the write transaction, which holds SQLite's
    write lock: no other writer can allocate meanwhile."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def find(self, keys: Sequence[SeriesKey]) -> Iterable[tuple[int, str, str, str]]:
        cursor: Iterable[tuple[int, str, str, str]] = self.db.execute(
            SELECT_SERIES_BY_KEYS, (orjson.dumps(list(keys)),))
        return cursor

    def series_counts(self, sources: Sequence[str]) -> tuple[dict[str, int], int]:
        stored = dict(self.db.execute(SELECT_SOURCE_SERIES, (orjson.dumps(list(sources)),)))
        return stored, int(self.db.execute(SELECT_TOTAL_SERIES).fetchone()[0])

    def create(self, rows: Sequence[NewSeries]) -> dict[SeriesKey, int]:
        first = int(self.db.execute(SELECT_MAX_SERIES_ID).fetchone()[0] or 0) + 1
        self.db.executemany(INSERT_SERIES, [(first + offset, *row)
                                            for offset, row in enumerate(rows)])
        return {row[:3]: first + offset for offset, row in enumerate(rows)}

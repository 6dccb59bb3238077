"""The PostgreSQL `series` table as the series cache sees it (store/series_cache.py), safe
with several servers creating the same series at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

from metrics_ingest.store.postgres.sql import (
    INSERT_SERIES,
    SELECT_SERIES_BY_KEYS,
    SELECT_SOURCE_SERIES,
    SELECT_TOTAL_SERIES,
)
from metrics_ingest.store.series_cache import NewSeries, SeriesKey


def columns(rows: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    return [[row[column] for row in rows] for column in range(width)]


class PostgresSeriesTable:
    """Misses in one query over three arrays. New series are inserted with ON CONFLICT DO
    NOTHING: a series another server inserted first (its transaction waited for, by the
    unique index) is skipped, then read back, so each key gets one id. They go in in the
    batch's order, so a push's series get neighbouring ids and its samples append to the
    B-trees (two servers creating the same new series in different orders can deadlock:
    PostgreSQL aborts one, and its batch is tried again)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def find(self, keys: Sequence[SeriesKey]) -> Iterable[tuple[int, str, str, str]]:
        return self.conn.execute(SELECT_SERIES_BY_KEYS, columns(keys, 3)).fetchall()

    def series_counts(self, sources: Sequence[str]) -> tuple[dict[str, int], int]:
        stored: dict[str, int] = dict(
            self.conn.execute(SELECT_SOURCE_SERIES, (list(sources),)).fetchall())
        total = self.conn.execute(SELECT_TOTAL_SERIES).fetchone()
        return stored, int(total[0]) if total is not None else 0

    def create(self, rows: Sequence[NewSeries]) -> dict[SeriesKey, int]:
        ordered = list(rows)
        made = {(name, source, labels): series_id for series_id, name, source, labels
                in self.conn.execute(INSERT_SERIES, columns(ordered, 4)).fetchall()}
        if len(made) < len(ordered):
            others = [row[:3] for row in ordered if row[:3] not in made]
            made.update({(name, source, labels): series_id for series_id, name, source, labels
                         in self.find(others)})
        return made

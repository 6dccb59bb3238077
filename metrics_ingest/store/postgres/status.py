"""The PostgreSQL status reader: the query reader's read-only connection (a lost one replaced,
its read run again) with the few reads the status page adds (sources, groups, one source's
series)."""

from __future__ import annotations

from metrics_ingest.store import GroupTimes, SourceSeries
from metrics_ingest.store.postgres.query import PostgresQueryReader
from metrics_ingest.store.postgres.sql import SELECT_ALL_SOURCE_SERIES, SELECT_GROUPS

SELECT_SOURCE_TIMES = "SELECT source, newest FROM sources"
SELECT_SOURCE_LATEST = (
    "SELECT s.id, s.metric_name, s.labels, l.value, l.timestamp"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.source = %s AND l.hidden = 0 ORDER BY s.metric_name, s.labels LIMIT %s"
)


class PostgresStatusReader(PostgresQueryReader):
    """The store's StatusReader (see store.StatusReader)."""

    def source_times(self) -> dict[str, int]:
        return {source: int(newest) for source, newest in self._rows(SELECT_SOURCE_TIMES)}

    def series_counts(self) -> dict[str, int]:
        return {source: int(count) for source, count in self._rows(SELECT_ALL_SOURCE_SERIES)}

    def groups(self) -> list[GroupTimes]:
        return [GroupTimes(*row) for row in self._rows(SELECT_GROUPS)]

    def source_series(self, source: str, limit: int) -> list[SourceSeries]:
        return [SourceSeries(*row) for row in self._rows(SELECT_SOURCE_LATEST, (source, limit))]

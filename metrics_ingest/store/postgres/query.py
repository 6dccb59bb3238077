"""The PostgreSQL query reader: a blocking read-only connection that PromQL evaluates from,
on the query threads. It reconnects after a lost connection, a read that finds it lost runs
once more on a new one (reader.BlockingReader); until the database answers again, reads
raise StorageError."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import QuerySeries, SeriesSamples, samples_by_series
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.postgres.connection import engine_errors
from metrics_ingest.store.postgres.reader import BlockingReader
from metrics_ingest.store.sample_arrays import SampleArrays, arrays_of_pairs, joined

SELECT_SERIES_NAMED = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = %s AND l.timestamp >= %s ORDER BY s.id"
)
SELECT_SERIES_ALL = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id WHERE l.timestamp >= %s ORDER BY s.id"
)
SELECT_SERIES_NAMES = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = ANY(%s::text[]) AND l.timestamp >= %s ORDER BY s.id"
)
# The label index's (name, value) range, its series checked for name and age.
SELECT_SERIES_LABELLED = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series_labels p"
    " JOIN series s ON s.id = p.series_id JOIN latest l ON l.series_id = s.id"
    " WHERE p.name = %(label)s AND p.value = ANY(%(values)s::text[])"
    " AND l.timestamp >= %(since)s"
    " AND (%(names)s::text[] IS NULL OR s.metric_name = ANY(%(names)s::text[])) ORDER BY s.id"
)
COUNT_NAMED = "SELECT count(*) FROM series WHERE metric_name = ANY(%s::text[])"
COUNT_LABELLED = (
    "SELECT count(*) FROM series_labels WHERE name = %s AND value = ANY(%s::text[])"
)
# Each distinct value, kept when one series with it is recent enough (usually the first one
# looked at). PostgreSQL has no skip scan: the distinct values are a recursive walk.
SELECT_LABEL_VALUES = (
    "WITH RECURSIVE v (value) AS ("
    " (SELECT value FROM series_labels WHERE name = %(label)s ORDER BY value LIMIT 1)"
    " UNION ALL SELECT (SELECT value FROM series_labels WHERE name = %(label)s"
    " AND value > v.value ORDER BY value LIMIT 1) FROM v WHERE v.value IS NOT NULL)"
    " SELECT v.value FROM v WHERE v.value IS NOT NULL AND EXISTS (SELECT 1 FROM series_labels p"
    " JOIN latest l ON l.series_id = p.series_id WHERE p.name = %(label)s"
    " AND p.value = v.value AND l.timestamp >= %(since)s)"
)
SELECT_METRIC_NAMES = (
    "WITH RECURSIVE n (name) AS ("
    " (SELECT metric_name FROM series ORDER BY metric_name LIMIT 1)"
    " UNION ALL SELECT (SELECT metric_name FROM series WHERE metric_name > n.name"
    " ORDER BY metric_name LIMIT 1) FROM n WHERE n.name IS NOT NULL)"
    " SELECT n.name FROM n WHERE n.name IS NOT NULL AND EXISTS (SELECT 1 FROM series s"
    " JOIN latest l ON l.series_id = s.id WHERE s.metric_name = n.name AND l.timestamp >= %s)"
)
SELECT_LABEL_NAMES = (
    "WITH RECURSIVE n (name) AS ("
    " (SELECT name FROM series_labels ORDER BY name LIMIT 1)"
    " UNION ALL SELECT (SELECT name FROM series_labels WHERE name > n.name"
    " ORDER BY name LIMIT 1) FROM n WHERE n.name IS NOT NULL)"
    " SELECT n.name FROM n WHERE n.name IS NOT NULL AND EXISTS (SELECT 1 FROM series_labels p"
    " JOIN latest l ON l.series_id = p.series_id WHERE p.name = n.name AND l.timestamp >= %s)"
)
SELECT_NAME_SOURCES = (
    "SELECT DISTINCT s.metric_name, s.source FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE l.timestamp >= %s"
)
# Day partitions outside [start, end] are pruned; within them the (timestamp, series_id) key
# serves both conditions.
SELECT_SAMPLES = (
    "SELECT series_id, timestamp, value FROM samples"
    " WHERE timestamp BETWEEN %s AND %s AND series_id = ANY(%s::bigint[])"
    " ORDER BY timestamp"
)
SELECT_STALE_MARKERS = (
    "SELECT series_id, timestamp FROM stale_markers"
    " WHERE series_id = ANY(%s::bigint[]) AND timestamp BETWEEN %s AND %s"
    " ORDER BY series_id, timestamp"
)
SELECT_SAMPLE_PAIRS = (
    "SELECT (series_id << 32) + (timestamp - %(start)s), value FROM samples"
    " WHERE timestamp BETWEEN %(start)s AND %(end)s AND series_id = ANY(%(ids)s::bigint[])"
    " ORDER BY timestamp"
)
SET_TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"


class PostgresQueryReader(BlockingReader):
    """The store's QueryReader (see store.QueryReader); one thread uses it at a time. A
    deadline becomes each statement's statement_timeout."""

    purpose = "query"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.deadline: float | None = None
        self.timeout_ms = 0  # the statement_timeout in force on the connection

    def _opened(self, conn: psycopg.Connection) -> None:
        super()._opened(conn)
        self.timeout_ms = 0

    def _connection(self) -> psycopg.Connection:
        conn = super()._connection()
        wanted = 0
        if self.deadline is not None:
            wanted = max(1, int((self.deadline - time.monotonic()) * 1000))
        if wanted != self.timeout_ms:
            with engine_errors(self.url):
                conn.execute(SET_TIMEOUT, (str(wanted),))
            self.timeout_ms = wanted
        return conn

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline

    def series(self, name: str | None, since: int) -> list[QuerySeries]:
        rows = (self._rows(SELECT_SERIES_ALL, (since,)) if name is None
                else self._rows(SELECT_SERIES_NAMED, (name, since)))
        return [QuerySeries(*row) for row in rows]

    def name_sources(self, since: int) -> list[tuple[str, str]]:
        return [(name, source) for name, source in self._rows(SELECT_NAME_SOURCES, (since,))]

    def series_named(self, names: Sequence[str], since: int) -> list[QuerySeries]:
        return [QuerySeries(*row) for row in self._rows(SELECT_SERIES_NAMES,
                                                        (list(names), since))]

    def series_labelled(self, label: str, values: Sequence[str], names: Sequence[str] | None,
                        since: int) -> list[QuerySeries]:
        return [QuerySeries(*row) for row in self._rows(SELECT_SERIES_LABELLED, {
            "label": label, "values": list(values), "since": since,
            "names": None if names is None else list(names)})]

    def count_named(self, names: Sequence[str]) -> int:
        return int(self._rows(COUNT_NAMED, (list(names),))[0][0])

    def count_labelled(self, label: str, values: Sequence[str]) -> int:
        return int(self._rows(COUNT_LABELLED, (label, list(values)))[0][0])

    def label_values(self, label: str, since: int) -> list[str]:
        if label == "__name__":
            return [row[0] for row in self._rows(SELECT_METRIC_NAMES, (since,))]
        return [row[0] for row in self._rows(SELECT_LABEL_VALUES,
                                             {"label": label, "since": since})]

    def label_names(self, since: int) -> list[str]:
        return [row[0] for row in self._rows(SELECT_LABEL_NAMES, (since,))]

    def samples(self, ids: Sequence[int], start: int, end: int) -> dict[int, SeriesSamples]:
        if not ids:
            return {}

        def read(conn: psycopg.Connection) -> dict[int, SeriesSamples]:
            found: dict[int, SeriesSamples] = {}
            samples_by_series(conn.execute(SELECT_SAMPLES, (start, end, list(ids))), found)
            return found

        return self._read(read)

    def sample_arrays(self, ids: Sequence[int], start: int, end: int) -> SampleArrays:
        if not ids:
            return joined([])
        return arrays_of_pairs(self._rows(SELECT_SAMPLE_PAIRS,
                                          {"start": start, "end": end, "ids": list(ids)}))

    def stale_markers(self, ids: Sequence[int], start: int, end: int) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        if not ids:
            return found
        for series_id, timestamp in self._rows(SELECT_STALE_MARKERS, (list(ids), start, end)):
            found.setdefault(series_id, []).append(timestamp)
        return found

    def families(self) -> dict[str, FamilyMeta]:
        return {name: FamilyMeta(kind, text)
                for name, kind, text in self._rows(SELECT_FAMILIES)}


"""The PostgreSQL query reader: a blocking read-only connection that PromQL evaluates from,
on the query threads. It reconnects after a lost connection; until the database answers
again, reads raise StorageError."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import QuerySeries, SeriesSamples
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.postgres.connection import broken, connect, engine_errors

SELECT_SERIES_NAMED = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = %s AND l.timestamp >= %s ORDER BY s.id"
)
SELECT_SERIES_ALL = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id WHERE l.timestamp >= %s ORDER BY s.id"
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
SET_TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"


class PostgresQueryReader:
    """The store's QueryReader (see store.QueryReader); one thread uses it at a time. A
    deadline becomes each statement's statement_timeout."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.deadline: float | None = None
        self.timeout_ms = 0  # the statement_timeout in force on the connection

    def _connection(self) -> psycopg.Connection:
        if broken(self.conn):
            self.conn = connect(self.url, "query")
            self.timeout_ms = 0
            with engine_errors(self.url):
                self.conn.execute("SET default_transaction_read_only = on")
        assert self.conn is not None
        wanted = 0
        if self.deadline is not None:
            wanted = max(1, int((self.deadline - time.monotonic()) * 1000))
        if wanted != self.timeout_ms:
            with engine_errors(self.url):
                self.conn.execute(SET_TIMEOUT, (str(wanted),))
            self.timeout_ms = wanted
        return self.conn

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline

    def series(self, name: str | None, since: int) -> list[QuerySeries]:
        conn = self._connection()
        with engine_errors(self.url):
            if name is None:
                rows = conn.execute(SELECT_SERIES_ALL, (since,)).fetchall()
            else:
                rows = conn.execute(SELECT_SERIES_NAMED, (name, since)).fetchall()
        return [QuerySeries(*row) for row in rows]

    def name_sources(self, since: int) -> list[tuple[str, str]]:
        conn = self._connection()
        with engine_errors(self.url):
            rows = conn.execute(SELECT_NAME_SOURCES, (since,)).fetchall()
        return [(name, source) for name, source in rows]

    def samples(self, ids: Sequence[int], start: int, end: int) -> dict[int, SeriesSamples]:
        found: dict[int, SeriesSamples] = {}
        if not ids:
            return found
        conn = self._connection()
        with engine_errors(self.url):
            cursor = conn.execute(SELECT_SAMPLES, (start, end, list(ids)))
            while rows := cursor.fetchmany(4096):
                for series_id, timestamp, value in rows:
                    held = found.get(series_id)
                    if held is None:
                        held = found[series_id] = ([], [])
                    held[0].append(timestamp)
                    held[1].append(value)
        return found

    def families(self) -> dict[str, FamilyMeta]:
        conn = self._connection()
        with engine_errors(self.url):
            return {name: FamilyMeta(kind, text)
                    for name, kind, text in conn.execute(SELECT_FAMILIES).fetchall()}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


"""The PostgreSQL read sessions: an async connection for the handlers' queries and a
blocking one that /metrics renders from on a thread. Both reconnect after a lost
connection; until the database answers again, reads raise StorageError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import cast

import psycopg

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import ExportRow, GroupTimes, StoredSample
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.postgres.connection import (
    broken,
    connect,
    connect_async,
    discard,
    discard_async,
    engine_errors,
)
from metrics_ingest.store.postgres.sql import (
    SELECT_ACTIVE_SOURCES,
    SELECT_ALL_SOURCE_SERIES,
    SELECT_EXPORTED_BETWEEN,
    SELECT_EXPORTED_NAMED,
    SELECT_GROUPS,
    SELECT_RECENT_SAMPLES,
)

FETCH_ROWS = 4096


class PostgresReader:
    """The store's ReadSession (see store.ReadSession), in read-only transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.AsyncConnection | None = None
        # One (re)connect at a time: handlers reading at once would each open a connection,
        # and all but the last would be left open.
        self._connecting = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection:
        if not broken(self.conn):
            return cast(psycopg.AsyncConnection, self.conn)
        async with self._connecting:
            if broken(self.conn):
                await discard_async(self.conn)  # lost: closed, not left to the GC
                self.conn = await connect_async(self.url, "reader")
                with engine_errors(self.url):
                    await self.conn.execute("SET default_transaction_read_only = on")
        assert self.conn is not None
        return self.conn

    async def recent_samples(self, since: int, source: str | None, metric: str | None,
                             limit: int) -> list[StoredSample]:
        params = {"since": since, "source": source, "metric": metric, "limit": limit}
        conn = await self._connection()
        with engine_errors(self.url):
            cursor = await conn.execute(SELECT_RECENT_SAMPLES, params)
            rows = await cursor.fetchall()
        return [StoredSample(*row) for row in rows]

    async def series_counts(self) -> dict[str, int]:
        conn = await self._connection()
        with engine_errors(self.url):
            cursor = await conn.execute(SELECT_ALL_SOURCE_SERIES)
            return {source: int(count) for source, count in await cursor.fetchall()}

    async def active_sources(self, since: int) -> list[str]:
        conn = await self._connection()
        with engine_errors(self.url):
            cursor = await conn.execute(SELECT_ACTIVE_SOURCES, (since,))
            rows = await cursor.fetchall()
        return [row[0] for row in rows]

    async def close(self) -> None:
        async with self._connecting:
            if self.conn is not None:
                await self.conn.close()


class PostgresExportReader:
    """The store's ExportReader (see store.ExportReader); one thread uses it at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if broken(self.conn):
            discard(self.conn)
            self.conn = connect(self.url, "export")
            with engine_errors(self.url):
                self.conn.execute("SET default_transaction_read_only = on")
        assert self.conn is not None
        return self.conn

    def rows_between(self, first: int, last: int, since: int) -> Iterator[ExportRow]:
        """Through a server-side cursor, FETCH_ROWS at a time, in one read transaction."""
        conn = self._connection()
        with engine_errors(self.url), conn.transaction():
            cursor = conn.cursor(name="export_rows")
            cursor.itersize = FETCH_ROWS
            cursor.execute(SELECT_EXPORTED_BETWEEN, (first, last, since))
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield from cast(list[ExportRow], rows)
            cursor.close()

    def rows_named(self, names: Sequence[str], since: int) -> list[ExportRow]:
        conn = self._connection()
        with engine_errors(self.url):
            rows = conn.execute(SELECT_EXPORTED_NAMED, (list(names), since)).fetchall()
        return cast(list[ExportRow], rows)

    def families(self) -> dict[str, FamilyMeta]:
        conn = self._connection()
        with engine_errors(self.url):
            return {name: FamilyMeta(kind, text)
                    for name, kind, text in conn.execute(SELECT_FAMILIES).fetchall()}

    def groups(self) -> list[GroupTimes]:
        conn = self._connection()
        with engine_errors(self.url):
            return [GroupTimes(*row) for row in conn.execute(SELECT_GROUPS).fetchall()]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

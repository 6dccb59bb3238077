"""The PostgreSQL read sessions: an async connection for the handlers' queries and a
blocking one that /metrics renders from on a thread. Both reconnect after a lost
connection, and a read that finds its connection lost (as the first one after a restart of
PostgreSQL does) runs once more on a new one; until the database answers again, reads
raise StorageError."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import psycopg

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import ExportRow, GroupTimes, StorageError, StoredSample
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.postgres.connection import (
    bounded_waits,
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
READ_ONLY = "SET default_transaction_read_only = on"
# Reads with optional filters (`%(source)s IS NULL OR s.source = %(source)s`) are planned
# for their values every time: psycopg prepares a statement from its 5th run, and from the
# 5th run of that PostgreSQL may switch to one generic plan for every value, which for
# /api/metrics?source= was a scan of every series (0.03 s -> 9-11 s from the 11th call).
CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"


def reader_setup(url: str) -> list[str]:
    """What a new read connection runs first: read-only, custom plans, bounded lock waits."""
    return [READ_ONLY, CUSTOM_PLANS, *bounded_waits(url, writes=False)]

T = TypeVar("T")
log = logging.getLogger("metrics_ingest.store")


def lost(conn: psycopg.Connection | psycopg.AsyncConnection | None, usable: bool) -> bool:
    """True when a read failed because its connection was lost: it looked usable before
    the read and is broken now. Anything else (a statement timeout, the database down
    when connecting, a new connection failing at once) is the read's own failure."""
    return usable and broken(conn)


def reading_again(purpose: str, exc: StorageError) -> None:
    log.info("%s connection lost (%s): reading again on a new one", purpose, exc)


class BlockingReader:
    """A blocking read-only connection, used by one thread at a time. `_read` runs a read
    on it, once more on a new connection when it was found lost (reads are idempotent)."""

    purpose = "read"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if broken(self.conn):
            discard(self.conn)
            self.conn = connect(self.url, self.purpose)
            self._opened(self.conn)
        assert self.conn is not None
        return self.conn

    def _opened(self, conn: psycopg.Connection) -> None:
        """Set up a new connection: read-only."""
        with engine_errors(self.url):
            for statement in reader_setup(self.url):
                conn.execute(statement)

    def _read(self, read: Callable[[psycopg.Connection], T]) -> T:
        """`read` on the connection; StorageError when it fails on a new one too."""
        usable = not broken(self.conn)
        try:
            with engine_errors(self.url):
                return read(self._connection())
        except StorageError as exc:
            if not lost(self.conn, usable):
                raise
            reading_again(self.purpose, exc)
        with engine_errors(self.url):
            return read(self._connection())

    def _rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class PostgresReader:
    """The store's ReadSession (see store.ReadSession), in read-only transactions."""

    purpose = "reader"

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
                self.conn = await connect_async(self.url, self.purpose)
                with engine_errors(self.url):
                    for statement in reader_setup(self.url):
                        await self.conn.execute(statement)
        assert self.conn is not None
        return self.conn

    async def _read(self, read: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """`read` on the connection, once more on a new one when it was found lost;
        StorageError when it fails on a new one too."""
        before = self.conn  # what _connection returns when usable (it does not await then)
        usable = not broken(before)
        try:
            with engine_errors(self.url):
                return await read(await self._connection())
        except StorageError as exc:
            if not lost(before, usable):
                raise
            reading_again(self.purpose, exc)
        with engine_errors(self.url):
            return await read(await self._connection())

    async def _rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async def read(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self._read(read)

    async def recent_samples(self, since: int, source: str | None, metric: str | None,
                             limit: int) -> list[StoredSample]:
        params = {"since": since, "source": source, "metric": metric, "limit": limit}
        rows = await self._rows(SELECT_RECENT_SAMPLES, params)
        return [StoredSample(*row) for row in rows]

    async def series_counts(self) -> dict[str, int]:
        rows = await self._rows(SELECT_ALL_SOURCE_SERIES)
        return {source: int(count) for source, count in rows}

    async def active_sources(self, since: int) -> list[str]:
        rows = await self._rows(SELECT_ACTIVE_SOURCES, (since,))
        return [row[0] for row in rows]

    async def close(self) -> None:
        async with self._connecting:
            if self.conn is not None:
                await self.conn.close()


class PostgresExportReader(BlockingReader):
    """The store's ExportReader (see store.ExportReader); one thread uses it at a time."""

    purpose = "export"

    def rows_between(self, first: int, last: int, since: int) -> Iterator[ExportRow]:
        """Through a server-side cursor, FETCH_ROWS at a time, in one read transaction; on a
        new connection once when the connection was found lost before the first rows."""
        usable = not broken(self.conn)
        started = False
        try:
            for batch in self._batches(first, last, since):
                started = True
                yield from batch
            return
        except StorageError as exc:
            if started or not lost(self.conn, usable):
                raise
            reading_again(self.purpose, exc)
        for batch in self._batches(first, last, since):
            yield from batch

    def _batches(self, first: int, last: int, since: int) -> Iterator[list[ExportRow]]:
        conn = self._connection()
        with engine_errors(self.url), conn.transaction():
            cursor = conn.cursor(name="export_rows")
            cursor.itersize = FETCH_ROWS
            cursor.execute(SELECT_EXPORTED_BETWEEN, (first, last, since))
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield cast(list[ExportRow], rows)
            cursor.close()

    def rows_named(self, names: Sequence[str], since: int) -> list[ExportRow]:
        return cast(list[ExportRow], self._rows(SELECT_EXPORTED_NAMED, (list(names), since)))

    def families(self) -> dict[str, FamilyMeta]:
        return {name: FamilyMeta(kind, text)
                for name, kind, text in self._rows(SELECT_FAMILIES)}

    def groups(self) -> list[GroupTimes]:
        return [GroupTimes(*row) for row in self._rows(SELECT_GROUPS)]

"""The PostgreSQL engine: one database shared by any number of servers (README,
"PostgreSQL and replicas")."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import psycopg
from psycopg.sql import SQL

from metrics_ingest.config import Synchronous
from metrics_ingest.model import EVERYTHING
from metrics_ingest.store import ONE_STATEMENT, StorageError
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.postgres import migrations
from metrics_ingest.store.postgres.connection import connect, engine_errors, redact
from metrics_ingest.store.postgres.feed import PostgresFeed
from metrics_ingest.store.postgres.query import PostgresQueryReader
from metrics_ingest.store.postgres.reader import PostgresExportReader, PostgresReader
from metrics_ingest.store.postgres.session import PostgresWriteSession
from metrics_ingest.store.postgres.sql import CHANNEL, NOTIFY, SELECT_DATABASE_SIZE
from metrics_ingest.store.postgres.status import PostgresStatusReader

SIZE_SECONDS = 30.0


class PostgresStore:
    """The store (see store.Store) at one PostgreSQL URL. The password may also come from
    PGPASSWORD or ~/.pgpass (libpq's own rules); `location` never shows it."""

    def __init__(self, url: str, limits: SeriesLimits | None = None) -> None:
        self.url = url
        self.limits = limits
        self.location = redact(url)
        # This process's name in the change feed: its own notices are not news to it.
        self.origin = secrets.token_hex(6)
        self._size = 0
        self._size_at = -SIZE_SECONDS
        self._measuring = False
        self._size_lock = threading.Lock()

    def claim(self) -> None:
        """Nothing to claim: servers share the database."""

    def release(self) -> None:
        pass

    def migrate(self) -> list[str]:
        conn = connect(self.url, "migrate")
        try:
            with engine_errors(self.url):
                return migrations.migrate(conn)
        finally:
            conn.close()

    def open_writer(self, synchronous: Synchronous) -> PostgresWriteSession:
        """`synchronous` is SQLite's: PostgreSQL's commits are as durable as its own
        synchronous_commit setting says (on by default)."""
        return PostgresWriteSession(self.url, self.origin, self.limits)

    async def open_reader(self) -> PostgresReader:
        return PostgresReader(self.url)

    def open_export_reader(self) -> PostgresExportReader:
        return PostgresExportReader(self.url)

    def open_query_reader(self, mapped: bool = False) -> PostgresQueryReader:
        return PostgresQueryReader(self.url)

    def open_status_reader(self) -> PostgresStatusReader:
        return PostgresStatusReader(self.url)

    def open_block_builder(self) -> None:
        return None  # (no packed blocks: PostgreSQL reads a series' samples by its index)

    def open_feed(self) -> PostgresFeed:
        return PostgresFeed(self.url, self.origin)

    def size_bytes(self) -> int:
        """The database's size as last measured, at most SIZE_SECONDS ago; measuring runs on
        a thread of its own, never on the caller's (a scrape, on the event loop)."""
        with self._size_lock:
            stale = time.monotonic() - self._size_at > SIZE_SECONDS and not self._measuring
            if stale:
                self._measuring = True
        if stale:
            threading.Thread(target=self._measure, name="db-size", daemon=True).start()
        return self._size

    def _measure(self) -> None:
        try:
            conn = connect(self.url, "size")
            try:
                with engine_errors(self.url):
                    row = conn.execute(SELECT_DATABASE_SIZE).fetchone()
                self._size = int(row[0]) if row else 0
            finally:
                conn.close()
        except StorageError:
            pass  # the database is down: the last size stands
        finally:
            with self._size_lock:
                self._size_at = time.monotonic()
                self._measuring = False

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]], int | None]:
        """One statement, committed; running servers are told to read everything again."""
        conn = connect(self.url, "db query")
        try:
            with engine_errors(self.url):
                try:
                    # In a pipeline the statement goes by the extended protocol, unnamed (as
                    # a pooler in transaction mode passes it): PostgreSQL refuses several
                    # statements before running any, as SQLite does, where the simple
                    # protocol would run them all and show the first one's result.
                    with conn.pipeline():
                        cursor = conn.execute(SQL(sql))  # the operator's own statement
                except psycopg.errors.SyntaxError as exc:
                    if exc.diag.source_function == "exec_parse_message":  # (any language)
                        raise StorageError(ONE_STATEMENT) from None
                    raise
                columns = [column.name for column in cursor.description or ()]
                rows = cursor.fetchall() if cursor.description is not None else []
                changed = None if cursor.description is not None else max(cursor.rowcount, 0)
                conn.execute(NOTIFY, (CHANNEL, encode_change("cli", EVERYTHING)))
            return columns, [tuple(row) for row in rows], changed
        finally:
            conn.close()


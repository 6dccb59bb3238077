"""The PostgreSQL engine: one database shared by any number of servers (README,
"PostgreSQL and replicas")."""

from __future__ import annotations

import secrets
from typing import Any

from psycopg.sql import SQL

from metrics_ingest.config import Synchronous
from metrics_ingest.model import EVERYTHING
from metrics_ingest.store.postgres import migrations
from metrics_ingest.store.postgres.connection import connect, engine_errors, redact
from metrics_ingest.store.postgres.feed import PostgresFeed, encode_change
from metrics_ingest.store.postgres.reader import PostgresExportReader, PostgresReader
from metrics_ingest.store.postgres.session import PostgresWriteSession
from metrics_ingest.store.postgres.sql import CHANNEL, NOTIFY, SELECT_DATABASE_SIZE


class PostgresStore:
    """The store (see store.Store) at one PostgreSQL URL. The password may also come from
    PGPASSWORD or ~/.pgpass (libpq's own rules); `location` never shows it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redact(url)
        # This process's name in the change feed: its own notices are not news to it.
        self.origin = secrets.token_hex(6)

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
        return PostgresWriteSession(self.url, self.origin)

    async def open_reader(self) -> PostgresReader:
        return PostgresReader(self.url)

    def open_export_reader(self) -> PostgresExportReader:
        return PostgresExportReader(self.url)

    def open_feed(self) -> PostgresFeed:
        return PostgresFeed(self.url, self.origin)

    def size_bytes(self) -> int:
        conn = connect(self.url, "size")
        try:
            with engine_errors(self.url):
                row = conn.execute(SELECT_DATABASE_SIZE).fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]], int | None]:
        """One statement, committed; running servers are told to read everything again."""
        conn = connect(self.url, "db query")
        try:
            with engine_errors(self.url):
                cursor = conn.execute(SQL(sql))  # the operator's own statement
                columns = [column.name for column in cursor.description or ()]
                rows = cursor.fetchall() if cursor.description is not None else []
                changed = None if cursor.description is not None else max(cursor.rowcount, 0)
                conn.execute(NOTIFY, (CHANNEL, encode_change("cli", EVERYTHING)))
            return columns, [tuple(row) for row in rows], changed
        finally:
            conn.close()


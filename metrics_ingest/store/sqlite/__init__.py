"""The SQLite engine: one database file in WAL mode, the embedded default."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from metrics_ingest.config import Synchronous
from metrics_ingest.model import EVERYTHING
from metrics_ingest.store import ONE_STATEMENT, StorageError
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.sqlite import migrations
from metrics_ingest.store.sqlite.blocks import SQLiteBlockBuilder
from metrics_ingest.store.sqlite.export_reader import SQLiteExportReader
from metrics_ingest.store.sqlite.feed import SQLiteFeed
from metrics_ingest.store.sqlite.query import SQLiteQueryReader
from metrics_ingest.store.sqlite.reader import SQLiteReader
from metrics_ingest.store.sqlite.session import SQLiteWriteSession
from metrics_ingest.store.sqlite.sql import INSERT_CHANGE, SELECT_VIEW_DELETES
from metrics_ingest.store.sqlite.status import SQLiteStatusReader


class SQLiteStore:
    """The store (see store.Store) at one file path; its directory is created on migrate."""

    def __init__(self, db_path: Path, shared: bool = False,
                 limits: SeriesLimits | None = None) -> None:
        self.db_path = db_path
        self.limits = limits
        self.location = str(db_path)
        self.shared = shared  # one of `serve --workers N`: other workers write to the file
        self.origin = secrets.token_hex(6)  # this process's name in the change notices
        self._lock: int | None = None

    def claim(self) -> None:
        """One server per file: an exclusive lock on `<db>.lock`, which holds the PID. A
        shared store's workers claim nothing: their supervisor holds the lock for them."""
        if self.shared:
            return
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        path = Path(f"{self.db_path}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"another metrics-ingest server (PID {holder}) is serving {self.db_path}; "
                "two servers must not share one SQLite file") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def release(self) -> None:
        if self._lock is not None:
            fd, self._lock = self._lock, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def migrate(self) -> list[str]:
        try:
            return migrations.migrate(self.db_path)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.db_path}: {exc}") from exc

    def open_writer(self, synchronous: Synchronous) -> SQLiteWriteSession:
        return SQLiteWriteSession(self.db_path, synchronous,
                                  self.origin if self.shared else None, self.limits)

    async def open_reader(self) -> SQLiteReader:
        return await SQLiteReader.open(self.db_path)

    def open_export_reader(self) -> SQLiteExportReader:
        return SQLiteExportReader(self.db_path)

    def open_query_reader(self, mapped: bool = False) -> SQLiteQueryReader:
        return SQLiteQueryReader(self.db_path, mapped)

    def open_status_reader(self) -> SQLiteStatusReader:
        return SQLiteStatusReader(self.db_path)

    def open_block_builder(self) -> SQLiteBlockBuilder:
        return SQLiteBlockBuilder(self.db_path)

    def open_feed(self) -> SQLiteFeed | None:
        """The other workers' notices; None alone on the file (no one else writes)."""
        return SQLiteFeed(self.db_path, self.origin) if self.shared else None

    def size_bytes(self) -> int:
        """The main file plus its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.db_path}{suffix}").st_size
        return total

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]], int | None]:
        if not self.db_path.exists():
            raise StorageError(f"no database at {self.db_path} (set --db or METRICS_DB_PATH)")
        conn = sqlite3.connect(f"file:{self.db_path}?mode=rw", uri=True, isolation_level=None)
        try:
            before = view_deletes(conn)
            try:
                cursor = conn.execute(sql)
            except sqlite3.ProgrammingError as exc:
                if "one statement at a time" in str(exc):
                    raise StorageError(ONE_STATEMENT) from None
                raise
            columns = [column[0] for column in cursor.description or ()]
            rows = cursor.fetchall()
            changed: int | None = None
            if cursor.description is None:
                # SQLite counts no changes for a statement on a view: deletions through the
                # `metrics` view are counted by its trigger instead.
                changed = max(cursor.rowcount, 0) + view_deletes(conn) - before
                tell_workers(conn)
            return columns, rows, changed
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        finally:
            conn.close()


def tell_workers(conn: sqlite3.Connection) -> None:
    """After an operator's statement: `serve --workers` processes read everything again."""
    with contextlib.suppress(sqlite3.OperationalError):  # before migration 0006
        conn.execute(INSERT_CHANGE, ("cli", encode_change("cli", EVERYTHING)))


def view_deletes(conn: sqlite3.Connection) -> int:
    try:
        return int(conn.execute(SELECT_VIEW_DELETES).fetchone()[0])
    except sqlite3.OperationalError:  # a database from before migration 0004
        return 0

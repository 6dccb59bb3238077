"""The SQLite side of the migration runner (store/migrations.py): the files of `sql/`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from metrics_ingest.store import migrations
from metrics_ingest.store.migrations import Migration

CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
)
SELECT_VERSIONS = "SELECT version FROM schema_version"
INSERT_VERSION = "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"


def discover(directory: Path | None = None) -> list[Migration]:
    return migrations.discover(directory or migrations.sql_directory())


def connect(db_path: Path) -> sqlite3.Connection:
    """A plain connection in autocommit mode with WAL on; creates the file's directory."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class SQLiteTarget:
    """BEGIN IMMEDIATE takes the write lock: a second runner waits, then sees the versions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute(CREATE_VERSION_TABLE)

    def begin(self) -> set[int]:
        self.conn.execute("BEGIN IMMEDIATE")
        return {row[0] for row in self.conn.execute(SELECT_VERSIONS)}

    def apply(self, migration: Migration) -> None:
        for statement in split_statements(migration.path.read_text(encoding="utf-8")):
            self.conn.execute(statement)
        self.conn.execute(INSERT_VERSION, (migration.version, migration.name, int(time.time())))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def migrate(db_path: Path, directory: Path | None = None) -> list[str]:
    """Apply every SQLite migration not yet recorded; returns the names applied."""
    conn = connect(db_path)
    try:
        return migrations.run(SQLiteTarget(conn), discover(directory))
    finally:
        conn.close()


def split_statements(script: str) -> list[str]:
    """Split a SQL script into whole statements (complete_statement keeps triggers intact).

    executescript() would commit on its own, breaking "a file and its version row in one
    transaction", so statements are run one by one instead.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if strip_comments(statement):
                statements.append(statement)
            pending = ""
    if strip_comments(pending.strip()):
        raise RuntimeError(f"incomplete SQL statement at the end of a migration: {pending[:80]!r}")
    return statements


def strip_comments(statement: str) -> str:
    return "\n".join(
        line for line in statement.splitlines() if not line.strip().startswith("--")
    ).strip()

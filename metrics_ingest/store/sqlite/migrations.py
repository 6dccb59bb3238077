"""Forward-only SQLite schema migrations: the `sql/NNNN_name.sql` files, applied in order, once
each, each with its row in `schema_version`."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

MIGRATION_NAME_RE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
)
SELECT_VERSIONS = "SELECT version FROM schema_version"
INSERT_VERSION = "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def sql_directory() -> Path:
    """The packaged copy inside a wheel, else the repository's `sql/` (editable installs)."""
    package = Path(__file__).resolve().parents[2]  # metrics_ingest/
    packaged = package / "sql"
    return packaged if packaged.is_dir() else package.parent / "sql"


def discover(directory: Path | None = None) -> list[Migration]:
    folder = directory or sql_directory()
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME_RE.fullmatch(path.name)
        if match is None:
            raise RuntimeError(f"migration file name must look like 0001_name.sql: {path}")
        found.append(Migration(int(match.group(1)), path.stem, path))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version number in {folder}")
    return found


def connect(db_path: Path) -> sqlite3.Connection:
    """A plain connection in autocommit mode with WAL on; creates the file's directory."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def migrate(db_path: Path, directory: Path | None = None) -> list[str]:
    """Apply every migration not yet recorded; each file and its version row commit together.

    Idempotent and safe against a concurrent runner: the check happens under the write lock.
    Returns the names applied by this call.
    """
    applied: list[str] = []
    conn = connect(db_path)
    try:
        conn.execute(CREATE_VERSION_TABLE)
        for migration in discover(directory):
            conn.execute("BEGIN IMMEDIATE")
            done = {row[0] for row in conn.execute(SELECT_VERSIONS)}
            if migration.version in done:
                conn.execute("ROLLBACK")
                continue
            try:
                for statement in split_statements(migration.path.read_text(encoding="utf-8")):
                    conn.execute(statement)
                conn.execute(INSERT_VERSION, (migration.version, migration.name, int(time.time())))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            applied.append(migration.name)
    finally:
        conn.close()
    return applied


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

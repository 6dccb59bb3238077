"""The PostgreSQL side of the migration runner (store/migrations.py): the files of
`sql/postgres/`, each run as one script in one transaction under the migration lock."""

from __future__ import annotations

import time

import psycopg
from psycopg.sql import SQL

from metrics_ingest.store import migrations
from metrics_ingest.store.migrations import Migration
from metrics_ingest.store.postgres.sql import ADVISORY_LOCK, MIGRATION_LOCK

CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)"
)
SELECT_VERSIONS = "SELECT version FROM schema_version"
INSERT_VERSION = "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)"


class PostgresTarget:
    """Servers starting together wait on the migration lock; each then sees what the
    others applied."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def begin(self) -> set[int]:
        self.conn.execute("BEGIN")
        self.conn.execute(ADVISORY_LOCK, (MIGRATION_LOCK,))
        self.conn.execute(CREATE_VERSION_TABLE)
        return {row[0] for row in self.conn.execute(SELECT_VERSIONS).fetchall()}

    def apply(self, migration: Migration) -> None:
        script = migration.path.read_text(encoding="utf-8")
        self.conn.execute(SQL(script))  # a file of ours, without parameters
        self.conn.execute(INSERT_VERSION, (migration.version, migration.name, int(time.time())))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply every PostgreSQL migration not yet recorded; returns the names applied."""
    return migrations.run(PostgresTarget(conn),
                          migrations.discover(migrations.sql_directory("postgres")))

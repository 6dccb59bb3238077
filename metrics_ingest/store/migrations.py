"""Forward-only schema migrations, one runner for both engines: the `NNNN_name.sql` files of
an engine's folder (`sql/` for SQLite, `sql/postgres/` for PostgreSQL), applied in order,
once each, each file and its `schema_version` row in one transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MIGRATION_NAME_RE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def sql_directory(engine: str = "") -> Path:
    """An engine's folder ("" for SQLite, "postgres"): the packaged copy inside a wheel, else
    the repository's `sql/` (editable installs)."""
    package = Path(__file__).resolve().parents[1]  # metrics_ingest/
    packaged = package / "sql"
    root = packaged if packaged.is_dir() else package.parent / "sql"
    return root / engine if engine else root


def discover(directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME_RE.fullmatch(path.name)
        if match is None:
            raise RuntimeError(f"migration file name must look like 0001_name.sql: {path}")
        found.append(Migration(int(match.group(1)), path.stem, path))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version number in {directory}")
    return found


class Target(Protocol):
    """An engine's side of a migration run, on one connection."""

    def begin(self) -> set[int]:
        """Open a transaction that excludes other runners; the versions applied so far."""
        ...

    def apply(self, migration: Migration) -> None:
        """Run the file and record its version row, inside the open transaction."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class NewerSchemaError(ValueError):
    """The database records a migration this release does not have: a newer release
    migrated it (a downgrade). Nothing was changed."""


def run(target: Target, migrations: list[Migration]) -> list[str]:
    """Apply every migration not yet recorded. Idempotent and safe against a concurrent
    runner: each check happens inside the excluding transaction. Returns the names applied.
    Raises NewerSchemaError, changing nothing, when the database is ahead of `migrations`."""
    applied: list[str] = []
    newest = max((migration.version for migration in migrations), default=0)
    for migration in migrations:
        recorded = target.begin()
        if max(recorded, default=0) > newest:
            target.rollback()
            raise NewerSchemaError(
                f"the database's schema is version {max(recorded)}, newer than this release's "
                f"{newest}: a newer metrics-ingest migrated it; install that release again or "
                "restore the backup taken before the upgrade")
        if migration.version in recorded:
            target.rollback()
            continue
        try:
            target.apply(migration)
            target.commit()
        except BaseException:
            target.rollback()
            raise
        applied.append(migration.name)
    return applied

"""The SQLite export reader: a read-only sqlite3 connection that /metrics renders from, on a
thread of its own, so a million series are read without holding up the event loop."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import orjson

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import GroupTimes, StorageError
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.sqlite.sql import (
    SELECT_EXPORTED_BETWEEN,
    SELECT_EXPORTED_NAMED,
    SELECT_GROUPS,
)

# (id, metric_name, source, labels, head: `name{labels}`, value, timestamp, pinned); labels
# are "" from rows_between
ExportRow = tuple[int, str, str, str, str, float, int, int]
FETCH_ROWS = 4096


class SQLiteExportReader:
    """The store's ExportReader (see store.ExportReader); one thread uses it at a time."""

    def __init__(self, db_path: Path) -> None:
        try:
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.execute("PRAGMA cache_size=-8192")  # KiB
            self.db.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def rows_between(self, first: int, last: int, since: int) -> Iterator[ExportRow]:
        """Exported series with ids in [first, last], in id order, fetched in slices (a
        million rows never sit in memory at once); one read transaction for them all."""
        try:
            cursor = self.db.execute(SELECT_EXPORTED_BETWEEN, (first, last, since))
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield from cast(list[ExportRow], rows)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def rows_named(self, names: Sequence[str], since: int) -> list[ExportRow]:
        """Exported series with any of these metric names (a histogram's members)."""
        try:
            rows = self.db.execute(SELECT_EXPORTED_NAMED,
                                   (orjson.dumps(list(names)), since)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return cast(list[ExportRow], rows)

    def families(self) -> dict[str, FamilyMeta]:
        return {name: FamilyMeta(kind, text)
                for name, kind, text in self.db.execute(SELECT_FAMILIES)}

    def groups(self) -> list[GroupTimes]:
        return [GroupTimes(*row) for row in self.db.execute(SELECT_GROUPS)]

    def close(self) -> None:
        self.db.close()

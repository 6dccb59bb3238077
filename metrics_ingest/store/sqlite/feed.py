"""The change feed between `serve --workers N` processes on one SQLite file: each worker's
commits leave notices (store/changes.py) in the `changes` table, in commit order (SQLite
commits one writer at a time), and each worker reads those after the last it saw."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from metrics_ingest.model import EVERYTHING, Change
from metrics_ingest.store import StorageError
from metrics_ingest.store.changes import decode_change
from metrics_ingest.store.sqlite.sql import SELECT_CHANGES_AFTER, SELECT_LAST_CHANGE


class SQLiteFeed:
    """The other workers' changes, for one worker (see store.ChangeFeed)."""

    def __init__(self, db_path: Path, origin: str) -> None:
        self.db_path = db_path
        self.origin = origin
        self.conn: sqlite3.Connection | None = None
        self.last: int | None = None
        self.lock = asyncio.Lock()

    async def drain(self) -> list[Change]:
        """Every notice other workers committed before this call (a fresh read: WAL readers
        see every commit made before they start). The first call, and one that finds notices
        pruned before it read them, says read everything."""
        async with self.lock:
            try:
                return await asyncio.to_thread(self._drain)
            except sqlite3.Error as exc:
                raise StorageError(str(exc)) from exc

    def _drain(self) -> list[Change]:
        if self.conn is None:
            self.conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True,
                                        isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout=5000")
        if self.last is None:
            self.last = int(self.conn.execute(SELECT_LAST_CHANGE).fetchone()[0])
            return [EVERYTHING]
        rows = self.conn.execute(SELECT_CHANGES_AFTER, (self.last,)).fetchall()
        if not rows:
            return []
        changes = [EVERYTHING] if rows[0][0] != self.last + 1 else []
        for _, origin, payload in rows:
            if origin != self.origin:
                changes.append(decode_change(payload)[1])
        self.last = int(rows[-1][0])
        return changes

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

"""The SQLite read session: a read-only aiosqlite connection and the queries readers run."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from metrics_ingest.store import StoredSample
from metrics_ingest.store.sqlite.sql import (
    SELECT_ACTIVE_SOURCES,
    SELECT_ALL_SOURCE_SERIES,
    SELECT_RECENT_SAMPLES,
)


class SQLiteReader:
    """The store's ReadSession (see store.ReadSession), read-only so a handler can never
    write by mistake. WAL mode: reads never wait for the writer."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, db_path: Path) -> SQLiteReader:
        conn = await aiosqlite.connect(f"file:{db_path}?mode=ro", uri=True,
                                       isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA cache_size=-16384")  # KiB
            await conn.execute("PRAGMA query_only=ON")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def recent_samples(self, since: int, source: str | None, metric: str | None,
                             limit: int) -> list[StoredSample]:
        params = {"since": since, "source": source, "metric": metric, "limit": limit}
        rows = await self.conn.execute_fetchall(SELECT_RECENT_SAMPLES, params)
        return [StoredSample(*row) for row in rows]

    async def active_sources(self, since: int) -> list[str]:
        rows = await self.conn.execute_fetchall(SELECT_ACTIVE_SOURCES, (since,))
        return [row[0] for row in rows]

    async def series_counts(self) -> dict[str, int]:
        return {source: count for source, count
                in await self.conn.execute_fetchall(SELECT_ALL_SOURCE_SERIES)}

    async def close(self) -> None:
        await self.conn.close()

"""The SQLite read session: a read-only aiosqlite connection and the queries readers run."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import aiosqlite
import orjson

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import GroupTimes, SeriesUpdate, StoredSample, StoredSeries
from metrics_ingest.store.sqlite.sql import (
    SELECT_ACTIVE_SOURCES,
    SELECT_FAMILIES,
    SELECT_FRESH_SERIES,
    SELECT_GROUPS,
    SELECT_RECENT_SAMPLES,
    SELECT_SERIES_BY_ID,
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

    async def exported_series(self, since: int) -> list[StoredSeries]:
        # Plain row tuples, shaped as StoredSeries (100k NamedTuples would cost ~15 ms).
        rows = await self.conn.execute_fetchall(SELECT_FRESH_SERIES, (since,))
        return cast(list[StoredSeries], rows)

    async def series_by_id(self, ids: set[int]) -> list[SeriesUpdate]:
        rows = await self.conn.execute_fetchall(SELECT_SERIES_BY_ID, (orjson.dumps(list(ids)),))
        return cast(list[SeriesUpdate], rows)

    async def families(self) -> dict[str, FamilyMeta]:
        rows = await self.conn.execute_fetchall(SELECT_FAMILIES)
        return {name: FamilyMeta(kind, help_text) for name, kind, help_text in rows}

    async def groups(self) -> list[GroupTimes]:
        rows = await self.conn.execute_fetchall(SELECT_GROUPS)
        return [GroupTimes(*row) for row in rows]

    async def recent_samples(self, since: int, source: str | None, metric: str | None,
                             limit: int) -> list[StoredSample]:
        params = {"since": since, "source": source, "metric": metric, "limit": limit}
        rows = await self.conn.execute_fetchall(SELECT_RECENT_SAMPLES, params)
        return [StoredSample(*row) for row in rows]

    async def active_sources(self, since: int) -> list[str]:
        rows = await self.conn.execute_fetchall(SELECT_ACTIVE_SOURCES, (since,))
        return [row[0] for row in rows]

    async def close(self) -> None:
        await self.conn.close()

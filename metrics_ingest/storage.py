"""SQLite connections (with their PRAGMAs), the runtime SQL, and typed queries over it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import aiosqlite

from metrics_ingest.config import Synchronous

SeriesKey = tuple[str, str, str]  # (metric_name, source, labels) - the series' unique key

# -- writer ---------------------------------------------------------------------------------

SET_SYNCHRONOUS = {"full": "PRAGMA synchronous=FULL", "normal": "PRAGMA synchronous=NORMAL"}
SELECT_DATA_VERSION = "PRAGMA data_version"
SELECT_ALL_SERIES = "SELECT id, metric_name, source, labels FROM series"
INSERT_SERIES = "INSERT INTO series (id, metric_name, source, labels) VALUES (?, ?, ?, ?)"
UPSERT_SAMPLE = (
    "INSERT INTO samples (timestamp, series_id, value) VALUES (?, ?, ?)"
    " ON CONFLICT (timestamp, series_id) DO UPDATE SET value = excluded.value"
)
UPSERT_LATEST = (
    "INSERT INTO latest (series_id, timestamp, value) VALUES (?, ?, ?)"
    " ON CONFLICT (series_id) DO UPDATE SET timestamp = excluded.timestamp,"
    " value = excluded.value WHERE excluded.timestamp >= latest.timestamp"
)

# -- retention ------------------------------------------------------------------------------

# The chunk boundary: the (timestamp, series_id) key `chunk` rows past the oldest sample.
SELECT_PURGE_BOUNDARY = (
    "SELECT timestamp, series_id FROM samples WHERE timestamp < ?"
    " ORDER BY timestamp, series_id LIMIT 1 OFFSET ?"
)
DELETE_SAMPLES_BEFORE_KEY = (
    "DELETE FROM samples WHERE timestamp < ? OR (timestamp = ? AND series_id < ?)"
)
DELETE_SAMPLES_BEFORE = "DELETE FROM samples WHERE timestamp < ?"
DELETE_EXPIRED_SERIES = (
    "DELETE FROM series WHERE id IN (SELECT series_id FROM latest WHERE timestamp < ?)"
)
DELETE_EXPIRED_LATEST = "DELETE FROM latest WHERE timestamp < ?"

# -- reads ----------------------------------------------------------------------------------

# Walks the series unique index in (metric_name, source, labels) order: families come out
# grouped and sorted without a sort step.
SELECT_FRESH_SERIES = (
    "SELECT s.metric_name, s.source, s.labels, l.value, l.timestamp"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE l.timestamp >= ? ORDER BY s.metric_name, s.source, s.labels"
)
SELECT_RECENT_SAMPLES = (
    "SELECT s.source, x.timestamp, s.metric_name, x.value, s.labels"
    " FROM samples x JOIN series s ON s.id = x.series_id"
    " WHERE x.timestamp >= :since"
    " AND (:source IS NULL OR s.source = :source)"
    " AND (:metric IS NULL OR s.metric_name = :metric)"
    " ORDER BY x.timestamp DESC, x.series_id DESC LIMIT :limit"
)
SELECT_ACTIVE_SOURCES = (
    "SELECT DISTINCT s.source FROM latest l JOIN series s ON s.id = l.series_id"
    " WHERE l.timestamp >= ? ORDER BY s.source"
)


class FreshSeries(NamedTuple):
    metric_name: str
    source: str
    labels: str
    value: float
    timestamp: int


class StoredSample(NamedTuple):
    source: str
    timestamp: int
    metric_name: str
    value: float
    labels: str


async def open_writer(db_path: Path, synchronous: Synchronous) -> aiosqlite.Connection:
    """The single write connection: autocommit mode (the writer issues BEGIN/COMMIT itself)."""
    conn = await aiosqlite.connect(db_path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        # full: the WAL is fsynced at every commit, so an acknowledged push survives power loss.
        # normal: fsync only at checkpoints; survives a process crash, not an OS crash.
        await conn.execute(SET_SYNCHRONOUS[synchronous])
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA cache_size=-65536")
        await conn.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        await conn.close()
        raise
    return conn


async def open_reader(db_path: Path) -> aiosqlite.Connection:
    """A read-only connection, so a read handler can never write by mistake."""
    conn = await aiosqlite.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA cache_size=-32768")
        await conn.execute("PRAGMA query_only=ON")
    except BaseException:
        await conn.close()
        raise
    return conn


async def data_version(conn: aiosqlite.Connection) -> int:
    """Changes whenever another connection commits: how the writer notices an outside purge."""
    rows = list(await conn.execute_fetchall(SELECT_DATA_VERSION))
    return int(rows[0][0])


async def load_series(conn: aiosqlite.Connection) -> dict[SeriesKey, int]:
    rows = await conn.execute_fetchall(SELECT_ALL_SERIES)
    return {(name, source, labels): series_id for series_id, name, source, labels in rows}


async def insert_rows(
    conn: aiosqlite.Connection,
    new_series: Sequence[tuple[int, str, str, str]],
    samples: Iterable[tuple[int, int, float]],
    latest: Iterable[tuple[int, int, float]],
) -> None:
    """Write one batch's rows; the caller owns the surrounding transaction."""
    if new_series:
        await conn.executemany(INSERT_SERIES, new_series)
    await conn.executemany(UPSERT_SAMPLE, samples)
    await conn.executemany(UPSERT_LATEST, latest)


async def purge_chunk(conn: aiosqlite.Connection, cutoff: int, chunk: int) -> tuple[int, bool]:
    """Delete up to `chunk` of the oldest samples older than `cutoff`; the caller commits.

    Returns (rows deleted, finished). Deleting a leading key range keeps every chunk cheap.
    """
    rows = list(await conn.execute_fetchall(SELECT_PURGE_BOUNDARY, (cutoff, chunk)))
    if not rows:
        cursor = await conn.execute(DELETE_SAMPLES_BEFORE, (cutoff,))
        return cursor.rowcount, True
    timestamp, series_id = rows[0]
    cursor = await conn.execute(DELETE_SAMPLES_BEFORE_KEY, (timestamp, timestamp, series_id))
    return cursor.rowcount, False


async def purge_expired_series(conn: aiosqlite.Connection, cutoff: int) -> int:
    """Forget series whose newest sample is older than `cutoff` (their samples are gone)."""
    cursor = await conn.execute(DELETE_EXPIRED_SERIES, (cutoff,))
    await conn.execute(DELETE_EXPIRED_LATEST, (cutoff,))
    return cursor.rowcount


async def fresh_series(conn: aiosqlite.Connection, since: int) -> list[FreshSeries]:
    rows = await conn.execute_fetchall(SELECT_FRESH_SERIES, (since,))
    return [FreshSeries(*row) for row in rows]


async def recent_samples(
    conn: aiosqlite.Connection, since: int, source: str | None, metric: str | None, limit: int
) -> list[StoredSample]:
    params = {"since": since, "source": source, "metric": metric, "limit": limit}
    rows = await conn.execute_fetchall(SELECT_RECENT_SAMPLES, params)
    return [StoredSample(*row) for row in rows]


async def active_sources(conn: aiosqlite.Connection, since: int) -> list[str]:
    rows = await conn.execute_fetchall(SELECT_ACTIVE_SOURCES, (since,))
    return [row[0] for row in rows]


def database_size(db_path: Path) -> int:
    """Bytes on disk: the main file plus its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{db_path}{suffix}").st_size
    return total

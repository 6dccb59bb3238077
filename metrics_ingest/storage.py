"""SQLite connections (with their PRAGMAs), the runtime SQL, and typed queries over it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar, cast

import aiosqlite
import orjson

from metrics_ingest.config import Synchronous

T = TypeVar("T")
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
    " value = excluded.value, hidden = 0 WHERE excluded.timestamp >= latest.timestamp"
)

# A batch's rows go in as multi-row VALUES statements: parameters are bound in C with the GIL
# held, then the whole statement runs as one sqlite3_step with it released. 2.5M rows/s,
# against 1.15M for executemany (which releases and re-takes the GIL around every row) and
# 1.0M for a JSON array through json_each (bench/README.md, "Writer"). Chunks of 256, 128,
# ..., 1 rows: a handful of prepared statements (kept in sqlite3's cache) serve every batch,
# and 768 parameters stay under the 999 of SQLite builds before 3.32.
VALUES_CHUNK_ROWS = 256
CHUNK_SIZES = tuple(1 << n for n in range(VALUES_CHUNK_ROWS.bit_length()))


def multi_row(statement: str) -> dict[int, str]:
    """`statement` (one VALUES row of three parameters) for every chunk size."""
    one = "VALUES (?, ?, ?)"
    assert one in statement
    return {size: statement.replace(one, "VALUES " + ",".join(["(?,?,?)"] * size))
            for size in CHUNK_SIZES}


UPSERT_SAMPLES = multi_row(UPSERT_SAMPLE)
UPSERT_LATESTS = multi_row(UPSERT_LATEST)

# -- push groups (the Pushgateway API) -----------------------------------------------------

UPSERT_GROUP = (
    "INSERT INTO push_groups (source, grouping, pushed_at) VALUES (?, ?, ?)"
    " ON CONFLICT (source, grouping) DO UPDATE SET pushed_at = excluded.pushed_at RETURNING id"
)
SELECT_GROUP = "SELECT id FROM push_groups WHERE source = ? AND grouping = ?"
SELECT_GROUP_MEMBERS = "SELECT series_id, family FROM group_series WHERE group_id = ?"
DELETE_GROUP_MEMBER = "DELETE FROM group_series WHERE group_id = ? AND series_id = ?"
INSERT_GROUP_MEMBER = (
    "INSERT OR REPLACE INTO group_series (group_id, series_id, family) VALUES (?, ?, ?)"
)
DELETE_GROUP = "DELETE FROM push_groups WHERE id = ?"
HIDE_SERIES = "UPDATE latest SET hidden = 1, pinned = 0 WHERE series_id = ?"
PIN_SERIES = "UPDATE latest SET pinned = 1, hidden = 0 WHERE series_id = ?"
DELETE_EXPIRED_MEMBERS = (
    "DELETE FROM group_series"
    " WHERE series_id IN (SELECT series_id FROM latest WHERE timestamp < ?)"
)
DELETE_EMPTY_GROUPS = (
    "DELETE FROM push_groups WHERE id NOT IN (SELECT DISTINCT group_id FROM group_series)"
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
WRITE_PROBE = "INSERT OR REPLACE INTO probe (id, written_at) VALUES (1, ?)"
GROW_PROBE = "INSERT OR REPLACE INTO probe (id, written_at, filler) VALUES (2, ?, zeroblob(?))"
DELETE_GROW_PROBE = "DELETE FROM probe WHERE id = 2"
PROBE_GROWTH_BYTES = 256 * 1024

# -- reads ----------------------------------------------------------------------------------

# Walks the series unique index in (metric_name, source, labels) order: families come out
# grouped and sorted without a sort step.
SELECT_FRESH_SERIES = (
    "SELECT s.metric_name, s.source, s.labels, l.value, l.timestamp, l.pinned"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE l.hidden = 0 AND (l.timestamp >= ? OR l.pinned = 1)"
    " ORDER BY s.metric_name, s.source, s.labels"
)
# The same columns for chosen series, fresh or not, with `hidden`: what /metrics re-reads
# after a commit touched them.
SELECT_SERIES_BY_ID = (
    "SELECT s.metric_name, s.source, s.labels, l.value, l.timestamp, l.pinned, l.hidden"
    " FROM latest l JOIN series s ON s.id = l.series_id"
    " WHERE l.series_id IN (SELECT value FROM json_each(?))"
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
    pinned: int  # 1: a push-group member, exported whatever its age, without a timestamp


class StoredSample(NamedTuple):
    source: str
    timestamp: int
    metric_name: str
    value: float
    labels: str


class WriteConnection:
    """The single write connection, confined to a thread of its own.

    `call(fn)` runs `fn(connection)` on that thread, so a whole transaction (BEGIN ... COMMIT)
    costs the event loop one round trip; with one aiosqlite call per statement a batch took six,
    each waiting behind a full loop iteration of request handlers (bench/README.md, "Writer").
    Calls run one at a time, in order.
    """

    def __init__(self, db_path: Path, synchronous: Synchronous) -> None:
        self.db_path = db_path
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._conn = await self._run(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # full: the WAL is fsynced at every commit, so an acknowledged push survives power
            # loss. normal: fsync only at checkpoints; survives a process crash, not an OS crash.
            conn.execute(SET_SYNCHRONOUS[self.synchronous])
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA cache_size=-8192")  # KiB; inserts append, 8 MiB holds the hot edge
            conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            conn.close()
            raise
        return conn

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` with the connection on the writer thread; its exceptions propagate."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the write connection is closed")
        return await self._run(lambda: fn(conn))

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(conn.close)
        self._executor.shutdown(wait=True)


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK (and re-raise) on any error: all or nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


async def open_reader(db_path: Path) -> aiosqlite.Connection:
    """A read-only connection, so a read handler can never write by mistake."""
    conn = await aiosqlite.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA cache_size=-16384")  # KiB
        await conn.execute("PRAGMA query_only=ON")
    except BaseException:
        await conn.close()
        raise
    return conn


def data_version(db: sqlite3.Connection) -> int:
    """Changes whenever another connection commits: how the writer notices an outside purge."""
    return int(db.execute(SELECT_DATA_VERSION).fetchone()[0])


def load_series(db: sqlite3.Connection) -> dict[SeriesKey, int]:
    rows = db.execute(SELECT_ALL_SERIES).fetchall()
    return {(name, source, labels): series_id for series_id, name, source, labels in rows}


def insert_rows(
    db: sqlite3.Connection,
    new_series: Sequence[tuple[int, str, str, str]],
    samples: list[int | float],
    latest: list[int | float],
) -> None:
    """Write one batch's rows; the caller owns the surrounding transaction.

    `samples` is flat (timestamp, series_id, value, ...), `latest` flat (series_id,
    timestamp, value, ...). Rows with the same key: the last one wins.
    """
    if new_series:
        db.executemany(INSERT_SERIES, new_series)
    insert_flat(db, UPSERT_SAMPLES, samples)
    insert_flat(db, UPSERT_LATESTS, latest)


def insert_flat(db: sqlite3.Connection, statements: dict[int, str],
                params: list[int | float]) -> None:
    """Rows of three values, flattened, through the largest chunk statements that fit."""
    rows = len(params) // 3
    start = 0
    size = VALUES_CHUNK_ROWS
    while start < rows:
        while size > rows - start:
            size //= 2
        db.execute(statements[size], params[start * 3:(start + size) * 3])
        start += size


def purge_chunk(db: sqlite3.Connection, cutoff: int, chunk: int) -> tuple[int, bool]:
    """Delete up to `chunk` of the oldest samples older than `cutoff`; the caller commits.

    Returns (rows deleted, finished). Deleting a leading key range keeps every chunk cheap.
    """
    boundary = db.execute(SELECT_PURGE_BOUNDARY, (cutoff, chunk)).fetchone()
    if boundary is None:
        return db.execute(DELETE_SAMPLES_BEFORE, (cutoff,)).rowcount, True
    timestamp, series_id = boundary
    return db.execute(DELETE_SAMPLES_BEFORE_KEY, (timestamp, timestamp, series_id)).rowcount, False


def write_probe(db: sqlite3.Connection, now: int) -> None:
    """Raise sqlite3.Error unless 256 KiB can really be written and committed now.

    Used only while the writer is unhealthy. A one-page write is not enough: on a nearly full
    disk it can fit where a push cannot, and readiness would flap. The blob is committed (so
    the WAL must grow and the disk must take it), then deleted again.
    """
    with immediate_transaction(db):
        db.execute(GROW_PROBE, (now, PROBE_GROWTH_BYTES))
    with immediate_transaction(db):
        db.execute(DELETE_GROW_PROBE)
        db.execute(WRITE_PROBE, (now,))


def apply_group_push(db: sqlite3.Connection, op: str, source: str, grouping: str,
                     members: dict[int, str], pushed_families: set[str],
                     now: float) -> list[int]:
    """Make a push group's exported series what a PUT, POST or DELETE says (Pushgateway
    semantics); the caller owns the transaction, which also holds the push's samples.

    PUT: the pushed series become the whole group. POST: they replace the group's series of
    the pushed families. DELETE: the group exports nothing. Series that leave a group are
    hidden from /metrics; their stored samples stay until retention. Returns the series hidden
    or pinned.
    """
    if op == "delete":
        row = db.execute(SELECT_GROUP, (source, grouping)).fetchone()
        if row is None:
            return []
        group_id = row[0]
        leaving = db.execute(SELECT_GROUP_MEMBERS, (group_id,)).fetchall()
        db.executemany(HIDE_SERIES, [(series_id,) for series_id, _ in leaving])
        db.executemany(DELETE_GROUP_MEMBER, [(group_id, series_id) for series_id, _ in leaving])
        db.execute(DELETE_GROUP, (group_id,))
        return [series_id for series_id, _ in leaving]
    group_id = db.execute(UPSERT_GROUP, (source, grouping, now)).fetchone()[0]
    old = dict(db.execute(SELECT_GROUP_MEMBERS, (group_id,)).fetchall())
    replaced = {series_id for series_id, family in old.items()
                if op == "put" or family in pushed_families}
    gone = [series_id for series_id in replaced if series_id not in members]
    # Only the difference is written: a job re-pushing the same series changes nothing here.
    added = [(group_id, series_id, family) for series_id, family in members.items()
             if old.get(series_id) != family]
    db.executemany(DELETE_GROUP_MEMBER, [(group_id, series_id) for series_id in gone])
    db.executemany(HIDE_SERIES, [(series_id,) for series_id in gone])
    db.executemany(INSERT_GROUP_MEMBER, added)
    db.executemany(PIN_SERIES, [(series_id,) for _, series_id, _ in added])
    return gone + [series_id for _, series_id, _ in added]


def purge_expired_series(db: sqlite3.Connection, cutoff: int) -> int:
    """Forget series whose newest sample is older than `cutoff` (their samples are gone)."""
    db.execute(DELETE_EXPIRED_MEMBERS, (cutoff,))
    db.execute(DELETE_EMPTY_GROUPS)
    forgotten = db.execute(DELETE_EXPIRED_SERIES, (cutoff,)).rowcount
    db.execute(DELETE_EXPIRED_LATEST, (cutoff,))
    return forgotten


async def fresh_series(conn: aiosqlite.Connection, since: int) -> list[FreshSeries]:
    """Plain row tuples, shaped as FreshSeries (building 100k NamedTuples costs ~15 ms)."""
    rows = await conn.execute_fetchall(SELECT_FRESH_SERIES, (since,))
    return cast(list[FreshSeries], rows)


async def series_by_id(conn: aiosqlite.Connection,
                       ids: set[int]) -> list[tuple[str, str, str, float, int, int, int]]:
    """(metric_name, source, labels, value, timestamp, pinned, hidden) of the given series."""
    rows = await conn.execute_fetchall(SELECT_SERIES_BY_ID, (orjson.dumps(list(ids)),))
    return cast(list[tuple[str, str, str, float, int, int, int]], rows)


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

"""SQLite's write primitives: the write connection and its PRAGMAs, transactions, a batch's
rows as multi-row VALUES, purge chunks and probe writes. Used by the write session
(session.py) on the writer's thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metrics_ingest.config import Synchronous
from metrics_ingest.store import StorageError
from metrics_ingest.store.sqlite.sql import (
    DELETE_EMPTY_GROUPS,
    DELETE_EXPIRED_LATEST,
    DELETE_EXPIRED_MARKERS,
    DELETE_EXPIRED_MEMBERS,
    DELETE_EXPIRED_SERIES,
    DELETE_EXPIRED_SOURCES,
    DELETE_GROW_PROBE,
    DELETE_SAMPLES_BEFORE,
    DELETE_SAMPLES_BEFORE_KEY,
    DELETE_SERIES_WITHOUT_SAMPLES,
    FORGET_TTL_LATEST,
    FORGET_TTL_SAMPLES,
    FORGET_TTL_SERIES,
    GROW_PROBE,
    PROBE_GROWTH_BYTES,
    SELECT_PURGE_BOUNDARY,
    SET_SYNCHRONOUS,
    UPSERT_LATESTS,
    UPSERT_SAMPLES,
    VALUES_CHUNK_ROWS,
    WRITE_PROBE,
)

PURGE_CHUNK_ROWS = 5000


def connect(db_path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # full: the WAL is fsynced at every commit, so an acknowledged push survives power
        # loss. normal: fsync only at checkpoints; survives a process crash, not an OS crash.
        conn.execute(SET_SYNCHRONOUS[synchronous])
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-8192")  # KiB; inserts append, 8 MiB holds the hot edge
        conn.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


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


@contextmanager
def engine_errors() -> Iterator[None]:
    """SQLite's errors as the store's StorageError, with SQLite's words."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(str(exc)) from exc


def insert_rows(db: sqlite3.Connection, samples: list[int | float],
                latest: list[int | float]) -> None:
    """Write one batch's rows; the caller owns the surrounding transaction.

    `samples` is flat (timestamp, series_id, value, ...), `latest` flat (series_id,
    timestamp, value, ...). Rows with the same key: the last one wins.
    """
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


def purge_expired_series(db: sqlite3.Connection, cutoff: int) -> int:
    """Forget series whose newest sample is older than `cutoff` (their samples are gone)."""
    db.execute(DELETE_EXPIRED_MEMBERS, (cutoff,))
    db.execute(DELETE_EMPTY_GROUPS, (cutoff,))
    forgotten = db.execute(DELETE_EXPIRED_SERIES, (cutoff,)).rowcount
    db.execute(DELETE_EXPIRED_LATEST, (cutoff,))
    db.execute(DELETE_EXPIRED_MARKERS, (cutoff,))
    db.execute(FORGET_TTL_SAMPLES)
    forgotten += db.execute(FORGET_TTL_SERIES).rowcount
    db.execute(FORGET_TTL_LATEST)
    forgotten += db.execute(DELETE_SERIES_WITHOUT_SAMPLES).rowcount
    db.execute(DELETE_EXPIRED_SOURCES, (cutoff,))
    return forgotten


def write_probe(db: sqlite3.Connection, now: int) -> None:
    """Raise sqlite3.Error unless 256 KiB can really be written and committed now.

    A one-page write is not enough: on a nearly full disk it can fit where a push cannot, and
    readiness would flap. The blob is committed (so the WAL must grow and the disk must take
    it), then deleted again.
    """
    with immediate_transaction(db):
        db.execute(GROW_PROBE, (now, PROBE_GROWTH_BYTES))
    with immediate_transaction(db):
        db.execute(DELETE_GROW_PROBE)
        db.execute(WRITE_PROBE, (now,))


def file_identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino
